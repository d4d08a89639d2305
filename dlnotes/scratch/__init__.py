"""A neural-network library in pure Python (no numpy, no torch), after Joel Grus.

Joel Grus, *Data Science from Scratch* 2e, ch. 18-19
(https://github.com/joelgrus/data-science-from-scratch) builds a small deep-learning
library on nested lists. This subpackage is our version of it, with PyTorch's names
where that costs nothing (``Linear(in_features, out_features)``, ``weight``/``bias``,
``state_dict``, ``zero_grad``/``step``, ``train()``/``eval()``), so that the `grus/`
notes read like the torch code in `raschka/`:

* `tensor`     nested-list tensors: shape, elementwise maps, random initialisers
* `functional` numerically stable sigmoid, tanh, softmax, logsumexp
* `layers`     `Layer`, `Linear`, `Sequential`, activations, `Dropout`, JSON weights
* `losses`     `SSE`, `SoftmaxCrossEntropy`
* `optim`      `GradientDescent`, `Momentum` (= ``torch.optim.SGD``)
* `train`      one epoch of per-sample (or mini-batch) training, evaluation
* `network`    ch. 18's perceptrons and hand-written one-hidden-layer backprop
* `fizzbuzz`   the FizzBuzz task's encodings
* `mnist`      an IDX-file parser and MNIST through `dlnotes.data`

A test checks that no module here imports numpy or torch.
"""
