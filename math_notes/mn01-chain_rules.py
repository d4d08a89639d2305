# %% [markdown]
# # Math notes 1 — Chain rules, from one variable to many
#
# *Mathematics for Deep Learning*, part 1 of 3: multivariable calculus as backpropagation
# uses it. This part needs high-school calculus (what a derivative *is*, and why
# derivatives of composed functions multiply) and, from section 3 on, a little vector
# notation, which a short primer introduces before it is used: vectors, the dot product,
# the length of a vector, matrix products and one inequality (Cauchy-Schwarz).
#
# We build up, one idea per section, and check every result numerically:
#
# 1. the derivative as the best linear approximation;
# 2. the ordinary chain rule: motivated (rates multiply) and proved; then a primer on
#    vectors, matrices and lengths;
# 3. partial derivatives and the gradient;
# 4. the Jacobian matrix;
# 5. the multivariable chain rule: a product of Jacobians;
# 6. a preview of backpropagation: a gradient through a chain of functions.
#
# Uses `dlnotes.backprop.numerical_gradient` and `numerical_jacobian` (central differences).
# Runtime: about 2 s, full or smoke.

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
plt.xlabel("$x$")
plt.ylabel("$f(x)$ and two lines through $(1, 1)$")
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
# ## Primer: vectors, matrices and lengths
#
# From here on a function takes many numbers at once, and five pieces of notation keep
# the formulas short. Each is checked with NumPy below.
#
# * **Vectors.** A vector $x \in \mathbb{R}^n$ is a list of $n$ numbers written as a
#   *column*, $x = (x_1, \ldots, x_n)^\top$: the $\top$ (*transpose*) turns a column into
#   a row and back. Vectors add entry by entry, $(x + h)_i = x_i + h_i$, and a number
#   scales every entry, $(t\,x)_i = t\,x_i$.
# * **Dot product.** $u^\top v = u_1 v_1 + \cdots + u_n v_n$, a single number ("row
#   times column").
# * **Length.** $\|v\| = \sqrt{v^\top v} = \sqrt{v_1^2 + \cdots + v_n^2}$, Pythagoras in
#   $n$ dimensions. Scaling scales the length, $\|t\,v\| = |t|\,\|v\|$; a *unit vector*
#   has length 1, and $v / \|v\|$ is the unit vector pointing like $v$.
# * **Matrix products.** An $m \times n$ matrix $A$ ($m$ rows, $n$ columns) times a
#   vector $v \in \mathbb{R}^n$ is the column $A v \in \mathbb{R}^m$ whose entry $i$ is
#   row $i$ of $A$ dotted with $v$: $(A v)_i = \sum_j A_{ij} v_j$. It is linear,
#   $A(u + v) = A u + A v$ and $A(t\,v) = t\,A v$. The product $AB$ of an $m \times k$
#   and a $k \times n$ matrix is "first $B$, then $A$": $(AB)\,v = A\,(B v)$, entry by
#   entry $(AB)_{ij} = \sum_p A_{ip} B_{pj}$. Transposing a product reverses it,
#   $(AB)^\top = B^\top A^\top$. A $1 \times n$ matrix is a row, so $u^\top v$ is a matrix
#   product too.
# * **Cauchy-Schwarz.** $|u^\top v| \le \|u\|\,\|v\|$. *Proof*: if $v = 0$ both sides are
#   0. Otherwise, for every number $t$,
#   $0 \le \|u - t\,v\|^2 = \|u\|^2 - 2t\,u^\top v + t^2\,\|v\|^2$. A quadratic in $t$
#   that is never negative has at most one root, so its discriminant is not positive:
#   $4\,(u^\top v)^2 - 4\,\|u\|^2\,\|v\|^2 \le 0$. $\blacksquare$ \
#   Hence $\cos\theta = \frac{u^\top v}{\|u\|\,\|v\|}$ lies in $[-1, 1]$; in the plane it
#   is the cosine of the angle between the arrows $u$ and $v$. Equality
#   $|u^\top v| = \|u\|\,\|v\|$ holds exactly when $u$ is a multiple of $v$ (the quadratic
#   then reaches 0).
#
# One consequence is used in section 5: **a matrix stretches a vector by at most a fixed
# factor.** Cauchy-Schwarz on row $i$ gives $(A v)_i^2 \le \big(\sum_j A_{ij}^2\big)\,
# \|v\|^2$; adding over the rows,
#
# $$\|A v\| \le \|A\|\,\|v\| \qquad \text{with } \|A\| = \sqrt{\textstyle\sum_{ij} A_{ij}^2}.$$

# %%
u, v = np.array([1.0, 2.0, 2.0]), np.array([3.0, 0.0, -4.0])
assert u @ v == 1 * 3 + 2 * 0 + 2 * (-4) == -5 and np.linalg.norm(u) == 3 == np.sqrt(u @ u)
A, B = rng.normal(size=(2, 3)), rng.normal(size=(3, 4))
w = rng.normal(size=4)
by_rows = np.array([sum(A[i, j] * v[j] for j in range(3)) for i in range(2)])
assert np.allclose(A @ v, by_rows)  # entry i: row i of A dotted with v
assert np.allclose((A @ B) @ w, A @ (B @ w)) and np.allclose((A @ B).T, B.T @ A.T)
pairs = rng.normal(size=(1000, 2, 5))
assert all(abs(a @ b) <= np.linalg.norm(a) * np.linalg.norm(b) for a, b in pairs)
assert np.isclose(abs(u @ (-2 * u)), np.linalg.norm(u) * np.linalg.norm(-2 * u))  # equality
stretch = max(np.linalg.norm(A @ x) / np.linalg.norm(x) for x in rng.normal(size=(1000, 3)))
print(f"u.v = {u @ v}, |u| = {np.linalg.norm(u)}, cos(angle) = {u @ v / 15:.3f}")
print(
    f"largest stretch |Av|/|v| over 1000 random v: {stretch:.3f} <= |A| = {np.linalg.norm(A):.3f}"
)
assert stretch <= np.linalg.norm(A)

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
# (the primer's angle between $\nabla f$ and $u$) is largest when $u$ points along
# $\nabla f$, where $\cos\theta = 1$: the gradient is the direction of steepest ascent,
# and $-\nabla f$ the direction gradient descent steps in.


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
# path from $x_j$ to $y_i$, summed over all paths.
#
# ### A worked example: the hiker
#
# A hiker crosses a hill whose height, in hundreds of metres above the car park, is
#
# $$H(x, y) = 9x - x^2 + y - y^2 + xy$$
#
# at the point $x$ km east and $y$ km north of it (the summit lies further north-east).
# After $t$ hours she is at $x(t) = 1 + 2t$, $y(t) = t^2$. How fast does she climb at
# $t = 1$, when she stands at $(3, 1)$, at height $H = 27 - 9 + 1 - 1 + 3 = 21$?
#
# Time reaches the height along two paths, one through $x$ and one through $y$ (here
# $n = 1$, $k = 2$, $m = 1$):
#
# * **east**: she walks east at $\frac{dx}{dt} = 2$ km/h, and the hill rises eastwards at
#   $\frac{\partial H}{\partial x} = 9 - 2x + y = 4$ per km; this path contributes
#   $4 \cdot 2 = 8$;
# * **north**: she walks north at $\frac{dy}{dt} = 2t = 2$ km/h, and the hill rises
#   northwards at $\frac{\partial H}{\partial y} = 1 - 2y + x = 2$ per km; this path
#   contributes $2 \cdot 2 = 4$.
#
# $$\frac{dH}{dt} = \frac{\partial H}{\partial x}\frac{dx}{dt}
# + \frac{\partial H}{\partial y}\frac{dy}{dt} = 8 + 4 = 12,$$
#
# i.e. she climbs 1,200 m per hour. In matrix form this is the $1 \times 2$ Jacobian
# $J_H = (4\ \ 2)$ times the $2 \times 1$ Jacobian $J_{(x, y)} = (2,\ 2)^\top$. A check
# without the chain rule: substituting the path gives
# $H(t) = 8 + 14t - 2t^2 + 2t^3 - t^4$, whose derivative at $t = 1$ is
# $14 - 4 + 6 - 4 = 12$.


# %%
def height(p):
    return float(9 * p[0] - p[0] ** 2 + p[1] - p[1] ** 2 + p[0] * p[1])


def position(t):
    return np.array([1 + 2 * t, t**2])


t0 = 1.0
p0 = position(t0)
dH = numerical_gradient(height, p0.copy())  # (dH/dx, dH/dy) at (3, 1)
velocity = numerical_jacobian(lambda t: position(t[0]), np.array([t0]))[:, 0]  # (dx/dt, dy/dt)
east, north = dH[0] * velocity[0], dH[1] * velocity[1]
climb = numerical_gradient(lambda t: height(position(t[0])), np.array([t0]))[0]
print(
    f"at {p0}: dH/dx = {dH[0]:.6f}, dH/dy = {dH[1]:.6f}; dx/dt = {velocity[0]:.6f}, "
    f"dy/dt = {velocity[1]:.6f}"
)
print(f"east path {east:.6f} + north path {north:.6f} = {east + north:.6f}; dH/dt = {climb:.6f}")
assert np.allclose([height(p0), east, north, climb], [21, 8, 4, 12], atol=1e-6)

# %% [markdown]
# On the left, the map: the contour lines of the hill, her path and, at $t = 1$, her
# velocity split into its east and north legs. On the right, the change of height near
# $t = 1$ if she made only the east move, only the north move, or both. Near $t = 1$ the
# two single moves add up to the real change: their slopes, 8 and 4, add to 12. Further
# away the sum drifts off, by terms of second order such as the $xy$ term's
# $(x - 3)(y - 1)$: the paths add up for small changes, which is all a derivative needs.

# %%
gx, gy = np.meshgrid(np.linspace(0, 7, 141), np.linspace(-0.5, 4.5, 101))
ts = np.linspace(0, 1.6, 100)
fig, (ax_map, ax_h) = plt.subplots(1, 2, figsize=(11, 4))
levels = ax_map.contour(gx, gy, 9 * gx - gx**2 + gy - gy**2 + gx * gy, levels=12, cmap="terrain")
ax_map.clabel(levels, fontsize=7)
ax_map.plot(*position(ts), "k-", label="path $(1 + 2t,\\ t^2)$")
ax_map.quiver(
    *p0, velocity[0], 0, color="C0", angles="xy", scale_units="xy", scale=2, label="east leg"
)
ax_map.quiver(
    p0[0] + velocity[0] / 2,
    p0[1],
    0,
    velocity[1],
    color="C1",
    angles="xy",
    scale_units="xy",
    scale=2,
    label="north leg",
)
ax_map.plot(*p0, "ko")
ax_map.set(
    title="the hill (height, 100 m) and the hiker at t = 1",
    xlabel="x, km east",
    ylabel="y, km north",
    aspect="equal",
)
ax_map.legend(loc="lower right", fontsize=8)
near = np.linspace(0.6, 1.4, 41)
only_east = [height([position(t)[0], p0[1]]) - 21 for t in near]
only_north = [height([p0[0], position(t)[1]]) - 21 for t in near]
both = [height(position(t)) - 21 for t in near]
ax_h.plot(near, only_east, label="only the east move (slope 8)")
ax_h.plot(near, only_north, label="only the north move (slope 4)")
ax_h.plot(near, both, "k", lw=3, alpha=0.4, label="the real walk (slope 12)")
ax_h.plot(near, np.add(only_east, only_north), "k--", label="east + north")
ax_h.set(
    title="change of height near t = 1: the two paths add up",
    xlabel="t, hours",
    ylabel="H(t) - H(1), 100 m",
)
ax_h.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Proof
#
# We need one fact from the primer: a matrix $A$ stretches no vector by more than the
# fixed factor $\|A\| = \sqrt{\sum_{ij} A_{ij}^2}$, i.e. $\|A v\| \le \|A\|\,\|v\|$.
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
# * Vectors are columns; $u^\top v$ is the dot product, $\|v\| = \sqrt{v^\top v}$ the length,
#   $|u^\top v| \le \|u\|\,\|v\|$ (Cauchy-Schwarz), hence $\|A v\| \le \|A\|\,\|v\|$.
# * Many variables: the gradient collects the partials, $f(x+h) \approx f(x) + \nabla f^\top h$;
#   the Jacobian stacks the gradients of several outputs as rows, $f(x+h) \approx f(x) + J h$.
#   Affine maps have $J = W$; elementwise functions have $J = \operatorname{diag}(\sigma')$.
# * Multivariable chain rule: $J_{f \circ g} = J_f\,J_g$, i.e. sum over paths of products
#   of rates (the hiker climbs at $4 \cdot 2 + 2 \cdot 2 = 12$: east path plus north path).
# * A loss gradient through a chain is a row vector times Jacobians; evaluated from the
#   left it needs only vector-matrix products.
#
# Now in the library: `dlnotes.backprop.numerical_gradient`, `numerical_jacobian`.
# Next: `mn02-backpropagation.py`.

# %% [markdown]
# ## Exercises
#
# **1. The chain rule by hand.** Differentiate $s(x) = \log\big(1 + e^{3x}\big)$ (the
# "softplus" of $3x$) with the chain rule: three links, $x \mapsto 3x \mapsto 1 + e^{3x}
# \mapsto \log(\cdot)$. Show that $s'(x) = 3\,\sigma(3x)$ with the sigmoid
# $\sigma(t) = 1 / (1 + e^{-t})$, so $s'(0) = 1.5$, and check at a few points with central
# differences.


# %% tags=["solution"]
# Rates multiply: d log(w)/dw = 1/w, d(1 + e^u)/du = e^u, d(3x)/dx = 3, so
# s'(x) = 3 e^(3x) / (1 + e^(3x)) = 3 / (1 + e^(-3x)) = 3 sigmoid(3x).
def softplus3(v):
    return float(np.log1p(np.exp(3 * v[0])))


for x in [0.0, -1.0, 0.4, 2.0]:
    by_hand = 3 / (1 + np.exp(-3 * x))
    numeric = numerical_gradient(softplus3, np.array([x]))[0]
    print(f"s'({x:+.1f}) = {by_hand:.8f} | central differences {numeric:.8f}")
    assert np.isclose(by_hand, numeric, rtol=1e-8)
assert 3 / (1 + np.exp(0)) == 1.5

# %% [markdown]
# **2. The Jacobian of softmax.** $p = \operatorname{softmax}(z)$,
# $p_i = e^{z_i} / \sum_k e^{z_k}$, maps $\mathbb{R}^n$ to $\mathbb{R}^n$. Show that
# $\frac{\partial p_i}{\partial z_j} = p_i\,([i = j] - p_j)$, i.e.
# $J = \operatorname{diag}(p) - p\,p^\top$, and check it with `numerical_jacobian`. Why
# does every column of $J$ add up to 0? Then use the chain rule to find the gradient of
# $\ell = -\log p_c$ (cross-entropy for the correct class $c$): you should get $p - y$ with
# $y$ the one-hot vector of $c$, the result note 2 builds on.


# %% tags=["solution"]
# Quotient rule: d p_i / d z_j = (e^z_i [i = j] S - e^z_i e^z_j) / S^2 = p_i [i = j] - p_i p_j.
# The columns add to 0 because sum_i p_i = 1 whatever z is: no change of z_j changes the sum.
# Chain rule for l = -log p_c: dl/dz_j = -(1 / p_c) dp_c/dz_j = -([c = j] - p_j) = p_j - y_j.
def softmax_vec(z):
    e = np.exp(z - z.max())
    return e / e.sum()


z = rng.normal(size=5)
p = softmax_vec(z)
J_softmax = np.diag(p) - np.outer(p, p)
assert np.allclose(numerical_jacobian(softmax_vec, z), J_softmax, atol=1e-9)
assert np.allclose(J_softmax.sum(axis=0), 0)
c = 3
y_onehot = np.eye(5)[c]
grad_ce = -(1 / p[c]) * J_softmax[c]  # the row of the chain rule: d(-log p)/dp_c times row c
assert np.allclose(grad_ce, p - y_onehot)
assert np.allclose(
    numerical_gradient(lambda v: float(-np.log(softmax_vec(v)[c])), z.copy()),
    p - y_onehot,
    atol=1e-8,
)
print("J = diag(p) - p p^T; columns sum to", J_softmax.sum(axis=0).round(12))
print("gradient of -log p_c:", grad_ce.round(4), "= p - y")

# %% [markdown]
# **3. Walking without climbing.** Standing at $(3, 1)$, where the hill's gradient is
# $\nabla H = (4, 2)^\top$, the hiker wants to walk at 1 km/h without climbing. Use the
# chain rule to find the two directions $v$ (unit vectors) with $dH/dt = 0$, and compute
# the east and the north contributions for one of them: neither is zero, yet they
# cancel. (On the map, such a walk starts along a contour line.)

# %% tags=["solution"]
# dH/dt = 4 v_x + 2 v_y = grad H . v must vanish: v is perpendicular to (4, 2),
# v = +-(1, -2) / sqrt(5). East: 4 / sqrt(5) = +1.789; north: 2 (-2 / sqrt(5)) = -1.789.
slope = numerical_gradient(height, np.array([3.0, 1.0]))
level = np.array([1.0, -2.0]) / np.sqrt(5)
for v in (level, -level):
    east, north = slope[0] * v[0], slope[1] * v[1]
    walk = numerical_gradient(lambda s, v=v: height(np.array([3.0, 1.0]) + s[0] * v), np.zeros(1))
    print(f"v = {v.round(4)}: east {east:+.4f}, north {north:+.4f}, dH/dt = {walk[0]:+.1e}")
    assert abs(east) > 1 and np.isclose(east, -north) and abs(walk[0]) < 1e-6
assert np.isclose(np.linalg.norm(level), 1) and np.isclose(east, -4 / np.sqrt(5))

# %% [markdown]
# **4. Which end is cheaper?** Count the multiplications of section 6's two orders for the
# chain with sizes $[4, 6, 5, 3]$: a $p \times q$ matrix times a $q \times r$ one costs
# $p\,q\,r$. Multiplying from the left starts with the $1 \times 3$ row; from the right,
# with $J_{f_2} J_{f_1}$. Then do the same for a chain of sizes $[1000, 1000, 1000, 1]$
# (a wide network with one output).


# %% tags=["solution"]
def multiplications(sizes, from_left):
    """Cost of (1 x n_L row) J_L ... J_1, with J_l of shape (n_l, n_(l-1))."""
    shapes = [(sizes[i + 1], sizes[i]) for i in reversed(range(len(sizes) - 1))]  # J_L first
    if from_left:
        rows, cost = 1, 0
        for n_out, n_in in shapes:
            cost += rows * n_out * n_in  # (1 x n_out) times (n_out x n_in)
        return cost
    product, cost = shapes[-1], 0  # J_1
    for n_out, n_in in reversed(shapes[:-1]):
        cost += n_out * n_in * product[1]  # J_l times the (n_in x n_0) product so far
        product = (n_out, product[1])
    return cost + 1 * product[0] * product[1]  # the row times the full Jacobian


assert multiplications([4, 6, 5, 3], True) == 15 + 30 + 24 == 69
assert multiplications([4, 6, 5, 3], False) == 6 * 5 * 4 + 3 * 5 * 4 + 3 * 4 == 192
wide = [1000, 1000, 1000, 1]
left, right = multiplications(wide, True), multiplications(wide, False)
print(f"sizes {wide}: from the left {left:,}, from the right {right:,} ({right / left:.0f}x)")
assert left == 1000 + 2 * 1000**2 and right == 1000**3 + 1000**2 + 1000
