# %% [markdown]
# # Math notes 1 — Chain rules, from one variable to many
#
# *Mathematics for Deep Learning*, part 1 of 3 (the seed author's notes on multivariable
# calculus as applied to backpropagation). This part needs nothing beyond high-school
# calculus: what a derivative *is*, and why derivatives of composed functions multiply.
#
# We build up, one idea per section, and check every result numerically:
#
# 1. the derivative as the best linear approximation;
# 2. the ordinary chain rule: motivated (rates multiply) and proved;
# 3. partial derivatives and the gradient;
# 4. the Jacobian matrix;
# 5. the multivariable chain rule: a product of Jacobians;
# 6. a preview of backpropagation: a gradient through a chain of functions.
#
# Uses `dlnotes.backprop.numerical_gradient` and `numerical_jacobian` (central differences).
# Runtime: about 2 s, full or smoke.
#
# **Notation for all three notes.** Vectors are columns: $x \in \mathbb{R}^n$ is an
# $n \times 1$ matrix and $x^\top$ is its transpose, a row. $\|h\|$ is the length of $h$.

# %%
import matplotlib.pyplot as plt
import numpy as np

from dlnotes import env
from dlnotes.backprop import numerical_gradient, numerical_jacobian

# %%
SMOKE = env.SMOKE
DEVICE = env.device()  # these notes compute in NumPy on the CPU; mn03 also uses PyTorch
env.seed_everything(123)
rng = np.random.default_rng(123)
N_RANDOM_CHECKS = env.choose(full=20, smoke=3)
print(env.banner(DEVICE))

# %% [markdown]
# ## 1. The derivative is the best linear approximation
#
# Zoom in far enough on the graph of a smooth function and it looks like a straight line.
# The derivative $f'(x)$ is the slope of that line. Precisely: for a small step $h$,
#
# $$f(x + h) = f(x) + f'(x)\,h + r(h), \qquad \text{where } \frac{r(h)}{h} \to 0
# \text{ as } h \to 0.$$
#
# Any slope $s$ gives an approximation $f(x) + s\,h$ whose error is small when $h$ is
# small; only $s = f'(x)$ makes the error small *even compared with $h$*. Dividing by $h$
# shows that this is the familiar definition:
# $\frac{r(h)}{h} = \frac{f(x+h) - f(x)}{h} - f'(x) \to 0$.
#
# Take $f(x) = x^3$ at $x = 1$, where $f'(1) = 3$. Since
# $(1 + h)^3 = 1 + 3h + 3h^2 + h^3$, the error of slope 3 is $r(h) = 3h^2 + h^3$, so
# $r(h)/h = 3h + h^2 \to 0$. With slope $2.9$ the error per unit step tends to $0.1$
# instead:


# %%
def cube(x):
    return x**3


print(f"{'h':>8} | error/h, slope 3 | error/h, slope 2.9")
for h in [1e-1, 1e-2, 1e-3, 1e-4]:
    err3 = (cube(1 + h) - (1 + 3.0 * h)) / h
    err29 = (cube(1 + h) - (1 + 2.9 * h)) / h
    print(f"{h:8.0e} | {err3:16.6f} | {err29:18.6f}")
assert np.isclose(err3, 3 * h + h**2) and abs(err3) < 1e-3
assert np.isclose(err29, 0.1, atol=1e-3)

# %% [markdown]
# Seen on the graph, the tangent line hugs the curve near $x = 1$; a line with
# another slope crosses it instead.

# %%
xs = np.linspace(0.4, 1.6, 200)
plt.figure(figsize=(5, 3.5))
plt.plot(xs, cube(xs), label="$f(x) = x^3$")
plt.plot(xs, 1 + 3 * (xs - 1), label="tangent, slope 3")
plt.plot(xs, 1 + 2 * (xs - 1), "--", label="slope 2")
plt.scatter([1], [1], color="k", zorder=3)
plt.legend()
plt.title("The derivative: the line that fits best near x = 1")
plt.show()

# %% [markdown]
# The numerical check used throughout these notes is the **central difference**
# $\frac{f(x+\varepsilon) - f(x-\varepsilon)}{2\varepsilon}$, whose error shrinks like
# $\varepsilon^2$ (the $h^2$ terms cancel). With $\varepsilon = 10^{-6}$ it agrees with the
# exact derivative to about 9 digits:

# %%
env.show(numerical_gradient)
x0 = np.array([1.0])
numeric = numerical_gradient(lambda v: float(cube(v[0])), x0)
print("numerical f'(1) =", numeric[0])
assert np.isclose(numeric[0], 3.0, rtol=1e-9)

# %% [markdown]
# ## 2. The chain rule in one variable
#
# ### Motivation: rates multiply
#
# If gear B turns 3 times for each turn of gear A, and gear C turns 2 times for each turn
# of B, then C turns $3 \cdot 2 = 6$ times for each turn of A. In symbols: $u = 3x$ and
# $y = 2u$ give $y = 6x$. Composing two *linear* functions multiplies their slopes.
#
# A differentiable function is, near each point, almost linear (section 1). So if
# $u = g(x)$ changes at rate $g'(x)$ and $y = f(u)$ changes at rate $f'(u)$, then near $x$,
# $y = f(g(x))$ should change at rate $f'(g(x))\,g'(x)$. That is the **chain rule**:
#
# $$(f \circ g)'(x) = f'(g(x))\, g'(x), \qquad \text{or, in Leibniz's notation,} \qquad
# \frac{dy}{dx} = \frac{dy}{du}\,\frac{du}{dx}.$$
#
# Example: a balloon's radius grows at $2$ cm/s; its volume $V = \frac43\pi r^3$ grows at
# $4\pi r^2$ cm³ per cm of radius; so the volume grows at $4\pi r^2 \cdot 2$ cm³/s.

# %% [markdown]
# ### Proof
#
# It is tempting to write $\frac{\Delta y}{\Delta x} = \frac{\Delta y}{\Delta u}
# \frac{\Delta u}{\Delta x}$ and take limits, but $\Delta u = g(x+h) - g(x)$ can be $0$ for
# $h \ne 0$ (think of a $g$ that is constant near $x$), and then we would divide by zero.
# Writing the linear approximation with an "error slope" avoids dividing by $\Delta u$.
#
# Let $g$ be differentiable at $x$ and $f$ differentiable at $u = g(x)$. Define
#
# $$\eta(k) = \frac{f(u + k) - f(u)}{k} - f'(u) \text{ for } k \ne 0, \qquad \eta(0) = 0.$$
#
# Then $\eta(k) \to 0$ as $k \to 0$ (that is the definition of $f'(u)$), and, for **every**
# $k$, including $k = 0$,
#
# $$f(u + k) = f(u) + \big(f'(u) + \eta(k)\big)\,k.$$
#
# Now take $k = g(x + h) - g(x)$, so that $f(g(x+h)) = f(u + k)$, and divide by $h \ne 0$:
#
# $$\frac{f(g(x+h)) - f(g(x))}{h} = \big(f'(u) + \eta(k)\big)\,\frac{g(x+h) - g(x)}{h}.$$
#
# As $h \to 0$: the last fraction tends to $g'(x)$; and $k \to 0$ (a differentiable $g$ is
# continuous), so $\eta(k) \to 0$. The right-hand side tends to $f'(g(x))\,g'(x)$. $\blacksquare$
#
# Check on $y = \sin(x^2)$, i.e. $g(x) = x^2$, $f(u) = \sin u$:
# $\frac{dy}{dx} = \cos(x^2) \cdot 2x$. A chain of three links multiplies three rates:
# $\frac{d}{dx} e^{\sin(x^2)} = e^{\sin(x^2)} \cdot \cos(x^2) \cdot 2x$.

# %%
for x in rng.uniform(-2, 2, N_RANDOM_CHECKS):
    v = np.array([x])
    two = numerical_gradient(lambda v: float(np.sin(v[0] ** 2)), v)[0]
    three = numerical_gradient(lambda v: float(np.exp(np.sin(v[0] ** 2))), v)[0]
    assert np.isclose(two, np.cos(x**2) * 2 * x, rtol=1e-6, atol=1e-8)
    assert np.isclose(three, np.exp(np.sin(x**2)) * np.cos(x**2) * 2 * x, rtol=1e-6, atol=1e-8)
print(f"chain rule agrees with central differences at {N_RANDOM_CHECKS} random points")
print(
    f"e.g. x = {x:.4f}: numeric {three:.8f}, chain rule "
    f"{np.exp(np.sin(x**2)) * np.cos(x**2) * 2 * x:.8f}"
)

# %% [markdown]
# ## 3. Many inputs: partial derivatives and the gradient
#
# A loss depends on many numbers at once. Take $f(x_1, x_2) = x_1^2 x_2 + \sin x_2$.
# The **partial derivative** $\frac{\partial f}{\partial x_1}$ is the ordinary derivative in
# $x_1$ while $x_2$ is held fixed: $\frac{\partial f}{\partial x_1} = 2 x_1 x_2$ and
# $\frac{\partial f}{\partial x_2} = x_1^2 + \cos x_2$.
#
# What if both inputs move, by $h_1$ and $h_2$? Walk there in two legs: first along $x_1$
# (the change is about $\frac{\partial f}{\partial x_1} h_1$), then along $x_2$ (about
# $\frac{\partial f}{\partial x_2} h_2$). The second partial is taken at a point moved by
# $h_1$, but if the partials are continuous it barely differs. So the changes **add**:
#
# $$f(x + h) = f(x) + \frac{\partial f}{\partial x_1} h_1 + \cdots
# + \frac{\partial f}{\partial x_n} h_n + r(h)
# = f(x) + \nabla f(x)^\top h + r(h), \qquad \frac{r(h)}{\|h\|} \to 0,$$
#
# with the **gradient** $\nabla f(x) = \big(\frac{\partial f}{\partial x_1}, \ldots,
# \frac{\partial f}{\partial x_n}\big)^\top$, a column like $x$. This is what
# "$f$ is differentiable at $x$" means in many variables. (Partials that merely exist are
# not enough: the two-leg argument needs them continuous near $x$, which holds for every
# function in these notes.)
#
# Among all directions $u$ of length 1, the change $\nabla f^\top u = \|\nabla f\|\cos\theta$
# is largest when $u$ points along $\nabla f$: the gradient is the direction of steepest
# ascent, and $-\nabla f$ the direction gradient descent steps in.


# %%
def f2(x):
    return float(x[0] ** 2 * x[1] + np.sin(x[1]))


def grad_f2(x):
    return np.array([2 * x[0] * x[1], x[0] ** 2 + np.cos(x[1])])


x = np.array([0.7, -1.1])
assert np.allclose(numerical_gradient(f2, x.copy()), grad_f2(x), rtol=1e-8)
u = rng.normal(size=2)
u /= np.linalg.norm(u)
for t in [1e-1, 1e-2, 1e-3]:
    h = t * u
    print(f"|h| = {t:.0e}: r(h)/|h| = {(f2(x + h) - f2(x) - grad_f2(x) @ h) / t:+.2e}")
assert abs(f2(x + h) - f2(x) - grad_f2(x) @ h) / t < 1e-2

# %%
angles = np.linspace(0, 2 * np.pi, 3600, endpoint=False)
directions = np.stack([np.cos(angles), np.sin(angles)])  # (2, 3600) unit vectors
rates = grad_f2(x) @ directions  # how fast f grows along each direction
best = directions[:, rates.argmax()]
print(
    "steepest direction",
    best.round(3),
    "| gradient / |gradient|",
    (grad_f2(x) / np.linalg.norm(grad_f2(x))).round(3),
)
assert np.allclose(best, grad_f2(x) / np.linalg.norm(grad_f2(x)), atol=2e-3)

# %% [markdown]
# ## 4. Many outputs: the Jacobian
#
# A layer of a network maps a vector to a vector: $f : \mathbb{R}^n \to \mathbb{R}^m$.
# Each output $f_i$ has its own gradient; stack them as **rows** and you get the
# $m \times n$ **Jacobian** matrix
#
# $$J_f(x) = \frac{\partial f}{\partial x} =
# \begin{pmatrix} \frac{\partial f_1}{\partial x_1} & \cdots & \frac{\partial f_1}{\partial x_n}
# \\ \vdots & & \vdots \\
# \frac{\partial f_m}{\partial x_1} & \cdots & \frac{\partial f_m}{\partial x_n}\end{pmatrix},
# \qquad f(x + h) = f(x) + J_f(x)\,h + r(h), \quad \frac{\|r(h)\|}{\|h\|} \to 0.$$
#
# Row $i$ is $\nabla f_i^\top$; column $j$ says how all outputs respond to input $j$. For a
# scalar function ($m = 1$) the Jacobian is the row $\nabla f^\top$. Two Jacobians we will
# meet in every layer:
#
# * an **affine map** $f(x) = W x + b$ is its own linear approximation: $J_f = W$, with
#   $r = 0$;
# * an **elementwise** function $f(x) = (\sigma(x_1), \ldots, \sigma(x_n))$: output $i$
#   depends on input $i$ only, so $J_f = \operatorname{diag}\big(\sigma'(x_1), \ldots,
#   \sigma'(x_n)\big)$.
#
# And a nonlinear one to check the definition: polar coordinates
# $f(r, \theta) = (r\cos\theta,\ r\sin\theta)$ have
# $J_f = \begin{pmatrix}\cos\theta & -r\sin\theta \\ \sin\theta & r\cos\theta\end{pmatrix}$.

# %%
env.show(numerical_jacobian)
W, b = rng.normal(size=(3, 4)), rng.normal(size=3)
x = rng.normal(size=4)
assert np.allclose(numerical_jacobian(lambda v: W @ v + b, x), W, atol=1e-8)
assert np.allclose(numerical_jacobian(np.tanh, x), np.diag(1 - np.tanh(x) ** 2), atol=1e-8)


def polar(p):
    return np.array([p[0] * np.cos(p[1]), p[0] * np.sin(p[1])])


r, th = 2.0, 0.6
J_polar = np.array([[np.cos(th), -r * np.sin(th)], [np.sin(th), r * np.cos(th)]])
assert np.allclose(numerical_jacobian(polar, np.array([r, th])), J_polar, atol=1e-8)
print("Jacobians of W x + b, tanh and polar coordinates agree with central differences")

# %% [markdown]
# ## 5. The multivariable chain rule: multiply the Jacobians
#
# ### Motivation 1: linear approximations compose
#
# Let $g : \mathbb{R}^n \to \mathbb{R}^k$ and $f : \mathbb{R}^k \to \mathbb{R}^m$, and
# $u = g(x)$. A small step $h$ in $x$ moves $u$ by about $J_g(x)\,h$; a small step $k$ in
# $u$ moves $f$ by about $J_f(u)\,k$. Substitute $k = J_g(x)\,h$:
#
# $$f(g(x + h)) \approx f(g(x)) + J_f(g(x))\,J_g(x)\,h.$$
#
# Composing linear maps multiplies their matrices, so the Jacobian of the composition is
# the product of the Jacobians, in the same order as the functions:
#
# $$\boxed{\;J_{f \circ g}(x) = J_f(g(x))\;J_g(x)\;} \qquad
# (m \times n) = (m \times k)(k \times n).$$
#
# With $n = k = m = 1$ this is section 2's chain rule: rates multiply.
#
# ### Motivation 2: add up every path
#
# Written entry by entry, the matrix product says
#
# $$\frac{\partial y_i}{\partial x_j} = \sum_{p=1}^{k}
# \frac{\partial y_i}{\partial u_p}\,\frac{\partial u_p}{\partial x_j}.$$
#
# Nudging $x_j$ nudges every intermediate $u_p$ (by rate $\partial u_p / \partial x_j$);
# each of those nudges moves $y_i$ (by rate $\partial y_i / \partial u_p$); and to first
# order, effects of small changes simply add (section 3). So: one product of rates per
# path from $x_j$ to $y_i$, summed over all paths. A hiker's altitude
# $T(x(t), y(t))$ changes at $\frac{dT}{dt} = \frac{\partial T}{\partial x}\frac{dx}{dt} +
# \frac{\partial T}{\partial y}\frac{dy}{dt}$: the east-west and north-south paths add.

# %% [markdown]
# ### Proof
#
# We need one fact about matrices: a matrix $A$ stretches no vector by more than a fixed
# factor $\|A\|$ (e.g. $\|A\| = \sqrt{\sum_{ij} A_{ij}^2}$ works, by Cauchy-Schwarz on each
# row), so $\|A v\| \le \|A\|\,\|v\|$.
#
# As in one variable, write $f(u + k) = f(u) + J_f(u)\,k + \rho(k)\,\|k\|$ where
# $\rho(k) = \frac{r_f(k)}{\|k\|} \to 0$ as $k \to 0$ and $\rho(0) = 0$; this holds for every
# $k$. Write $g(x + h) = g(x) + J_g h + r_g(h)$ with $\|r_g(h)\| / \|h\| \to 0$. Put
# $k = g(x+h) - g(x) = J_g h + r_g(h)$:
#
# $$f(g(x + h)) = f(g(x)) + J_f J_g\,h + \underbrace{J_f\,r_g(h) + \rho(k)\,\|k\|}_{R(h)}.$$
#
# It remains to show $\|R(h)\| / \|h\| \to 0$. The first part:
# $\|J_f\,r_g(h)\| / \|h\| \le \|J_f\|\,\|r_g(h)\| / \|h\| \to 0$. The second: $\|k\| \le
# \|J_g\|\,\|h\| + \|r_g(h)\|$, so $\|k\| / \|h\|$ stays bounded as $h \to 0$, while
# $k \to 0$ and therefore $\rho(k) \to 0$; their product tends to $0$. $\blacksquare$
#
# Check with $g(x_1, x_2) = (x_1 x_2,\ \sin x_1,\ x_2^2)$ and
# $f(u_1, u_2, u_3) = (u_1 + u_2 u_3,\ e^{u_1} - u_3)$, Jacobians written out by hand:


# %%
def g(x):
    return np.array([x[0] * x[1], np.sin(x[0]), x[1] ** 2])


def J_g(x):
    return np.array([[x[1], x[0]], [np.cos(x[0]), 0.0], [0.0, 2 * x[1]]])


def f(u):
    return np.array([u[0] + u[1] * u[2], np.exp(u[0]) - u[2]])


def J_f(u):
    return np.array([[1.0, u[2], u[1]], [np.exp(u[0]), 0.0, -1.0]])


for x in rng.normal(size=(N_RANDOM_CHECKS, 2)):
    assert np.allclose(numerical_jacobian(g, x), J_g(x), atol=1e-8)
    assert np.allclose(numerical_jacobian(f, g(x)), J_f(g(x)), atol=1e-8)
    composed = numerical_jacobian(lambda v: f(g(v)), x)
    assert np.allclose(composed, J_f(g(x)) @ J_g(x), rtol=1e-7, atol=1e-8)
print("J_(f o g) =\n", composed.round(6), "\nJ_f(g(x)) J_g(x) =\n", (J_f(g(x)) @ J_g(x)).round(6))

# %% [markdown]
# ## 6. Preview: the gradient of a loss through a chain
#
# A network is a chain $x = u_0 \mapsto u_1 = f_1(u_0) \mapsto \cdots \mapsto
# u_L = f_L(u_{L-1})$ followed by a scalar loss $\ell(u_L)$. By section 5, applied
# $L$ times,
#
# $$\frac{\partial \ell}{\partial x} =
# \underbrace{\frac{\partial \ell}{\partial u_L}}_{1 \times n_L}
# \, J_{f_L} \, J_{f_{L-1}} \cdots J_{f_1}.$$
#
# The product is the same whichever end we start from, but the cost is not: from the
# left, every step multiplies a **row vector** by a matrix; from the right, every step
# multiplies two matrices. Backpropagation starts from the left: that is note 2.

# %%
sizes = [4, 6, 5, 3]  # u0 in R^4, u1 in R^6, u2 in R^5, u3 in R^3
Ws = [rng.normal(size=(sizes[i + 1], sizes[i])) for i in range(3)]


def chain(v):
    for W in Ws:
        v = np.tanh(W @ v)
    return v


x = rng.normal(size=4)
us = [x]
for W in Ws:
    us.append(np.tanh(W @ us[-1]))
Js = [(1 - us[i + 1] ** 2)[:, None] * Ws[i] for i in range(3)]  # diag(tanh') W, by section 5
dl_du = 2 * us[-1][None, :]  # loss ||u3||^2: a 1 x 3 row
from_left = ((dl_du @ Js[2]) @ Js[1]) @ Js[0]
from_right = dl_du @ (Js[2] @ (Js[1] @ Js[0]))
numeric = numerical_gradient(lambda v: float(chain(v) @ chain(v)), x.copy())
assert np.allclose(from_left, from_right) and np.allclose(from_left[0], numeric, atol=1e-8)
print("d loss / dx =", from_left.round(6), "(both orders and central differences agree)")

# %% [markdown]
# ## Summary
#
# * A derivative is the slope of the best linear approximation; the error is small even
#   relative to the step.
# * Chain rule: rates multiply, $(f \circ g)' = f'(g)\,g'$; the proof uses the "error slope"
#   $\eta(k)$ to avoid dividing by $\Delta u$.
# * Many variables: the gradient collects the partials, $f(x+h) \approx f(x) + \nabla f^\top h$;
#   the Jacobian stacks the gradients of several outputs as rows, $f(x+h) \approx f(x) + J h$.
#   Affine maps have $J = W$; elementwise functions have $J = \operatorname{diag}(\sigma')$.
# * Multivariable chain rule: $J_{f \circ g} = J_f\,J_g$, i.e. sum over paths of products
#   of rates.
# * A loss gradient through a chain is a row vector times Jacobians; evaluated from the
#   left it needs only vector-matrix products.
#
# Now in the library: `dlnotes.backprop.numerical_gradient`, `numerical_jacobian`.
# Next: `mn02-backpropagation.py`.
