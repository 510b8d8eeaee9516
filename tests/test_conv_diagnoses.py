"""Hand-written buggy conv-net students, one bug each, graded by /v1/check (issue 15).

Two students write the same small conv net the way their course teaches it, with nested
loops, and nothing here uses the service's code to make an answer:

- CS231n (NCHW): conv_forward_naive / conv_backward_naive, max_pool_forward_naive /
  max_pool_backward_naive (np.argmax: the first maximum), an average pool in the same
  style, relu, x.reshape(N, -1), an affine softmax head with integer labels and
  ``dscores /= N`` (dz_scale "reduced");
- Andrew Ng (NHWC): conv_forward / conv_backward with W (f, f, n_C_prev, n_C) and b
  (1, 1, 1, n_C), pool_forward / pool_backward with create_mask_from_window (``x ==
  np.max(x)``, so "ties": "all") and distribute_value, dZ = A - Y and 1/m in every dW and
  db (dz_scale "per_sample").

The net: conv 3x3 stride 1 pad 1 relu - pool 2x2 stride 2 (max or average) - conv 3x3
stride 2 pad 0 relu - flatten - dense softmax.  Each bug is in the student's function, so
it is made wherever that function runs (a stride ignored changes only the strided conv).
"""

from __future__ import annotations

import ast
import re

import numpy as np
import pytest

from schemas import CheckRequestSchema
from service.core.kind_mistakes import CODES
from service.core.mistakes import passes_needed, reruns_forward
from service.core.submission import DIAGNOSES, Submission, Tolerance
from service.grading import Grader

BATCH = 2
SNIPPET = re.compile(r"`([^`]+)`")
FIX = re.compile(r" Fix(?: in layer (\d+))?: `([^`]+)`\.$")


def relu(z):
    return np.maximum(z, 0)


def softmax_head(a_flat, W, b, y):
    """The affine softmax head, both courses alike: (loss, dscores before any 1/N, probs)."""
    scores = a_flat @ W + b
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    n = a_flat.shape[0]
    loss = -np.log(probs[range(n), y]).mean()
    dscores = probs.copy()
    dscores[range(n), y] -= 1
    return loss, dscores


# -- CS231n, NCHW ---------------------------------------------------------------------------------


def conv_forward_naive(x, w, b, stride, pad, bug):
    N, _, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = 1 + (H + 2 * pad - HH) // stride, 1 + (W + 2 * pad - WW) // stride
    kernel = w[:, :, ::-1, ::-1] if bug in ("kernel_flipped", "kernel_flipped_everywhere") else w
    out = np.zeros((N, F, Ho, Wo))
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    window = xp[n, :, i * stride : i * stride + HH, j * stride : j * stride + WW]
                    out[n, f, i, j] = np.sum(window * kernel[f]) + b[f]
    # "kernel_flipped_everywhere": w was reassigned to the flipped kernel before the cache
    cached = kernel if bug == "kernel_flipped_everywhere" else w
    return out, (x, cached, b, stride, pad)


def conv_backward_naive(dout, cache, bug):
    x, w, b, stride, pad = cache
    N, _, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, Ho, Wo = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw, db = np.zeros_like(xp), np.zeros_like(w), np.zeros_like(b)
    s = 1 if bug == "stride_ignored_in_conv" else stride
    kernel = w[:, :, ::-1, ::-1] if bug == "kernel_flipped_in_dx" else w
    for n in range(N):
        for f in range(F):
            db[f] += dout[n, f].sum()
            for i in range(Ho):
                for j in range(Wo):
                    rows, cols = slice(i * s, i * s + HH), slice(j * s, j * s + WW)
                    dw[f] += xp[n, :, rows, cols] * dout[n, f, i, j]
                    dxp[n, :, rows, cols] += kernel[f] * dout[n, f, i, j]
    dx = dxp if bug == "dx_still_padded" else dxp[:, :, pad : pad + H, pad : pad + W]
    return dx, dw, db


def pool_forward_naive(x, size, stride, mode):
    N, C, H, W = x.shape
    Ho, Wo = 1 + (H - size) // stride, 1 + (W - size) // stride
    out = np.zeros((N, C, Ho, Wo))
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = x[n, c, i * stride : i * stride + size, j * stride : j * stride + size]
                    out[n, c, i, j] = window.max() if mode == "max" else window.mean()
    return out, (x, size, stride, mode)


def pool_backward_naive(dout, cache, bug):
    x, size, stride, mode = cache
    N, C, _, _ = x.shape
    _, _, Ho, Wo = dout.shape
    dx = np.zeros_like(x)
    s = 1 if bug == "stride_ignored_in_pool" else stride
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    rows, cols = slice(i * s, i * s + size), slice(j * s, j * s + size)
                    g = dout[n, c, i, j]
                    if mode == "avg":
                        dx[n, c, rows, cols] += g if bug == "avgpool_not_divided" else g / size**2
                    elif bug == "maxpool_gradient_to_all":
                        dx[n, c, rows, cols] += g
                    else:
                        di, dj = np.unravel_index(np.argmax(x[n, c, rows, cols]), (size, size))
                        dx[n, c, i * s + di, j * s + dj] += g
    return dx


def cs231n_student(arrays, pool, bug):
    x, y, w1, b1, w2, b2, W3, b3 = arrays
    N = x.shape[0]
    z0, c0 = conv_forward_naive(x, w1, b1, 1, 1, bug)
    a0 = relu(z0)
    p1, c1 = pool_forward_naive(a0, 2, 2, pool)
    z2, c2 = conv_forward_naive(p1, w2, b2, 2, 0, bug)
    a2 = relu(z2)
    flat = a2.reshape(N, -1)
    loss, dscores = softmax_head(flat, W3, b3, y)
    dscores /= N
    dW3, db3 = flat.T @ dscores, dscores.sum(axis=0)
    dz2 = (dscores @ W3.T).reshape(a2.shape) * (z2 > 0)
    dx2, dw2, db2 = conv_backward_naive(dz2, c2, bug)
    dx1 = pool_backward_naive(dx2, c1, bug)
    dz0 = dx1 * (z0 > 0)
    dx0, dw0, db0 = conv_backward_naive(dz0, c0, bug)
    return loss, [
        {"z": z0, "dx": dx0, "dW": dw0, "db": db0},
        {"dx": dx1},
        {"z": z2, "dx": dx2, "dW": dw2, "db": db2},
        {},
        {"dW": dW3, "db": db3},
    ]


# -- Andrew Ng, NHWC ----------------------------------------------------------------------------


def zero_pad(X, pad):
    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def conv_forward(A_prev, W, b, hparameters, bug):
    m, n_H_prev, n_W_prev, _ = A_prev.shape
    f, _, _, n_C = W.shape
    stride, pad = hparameters["stride"], hparameters["pad"]
    n_H = int((n_H_prev - f + 2 * pad) / stride) + 1
    n_W = int((n_W_prev - f + 2 * pad) / stride) + 1
    Z = np.zeros((m, n_H, n_W, n_C))
    A_prev_pad = zero_pad(A_prev, pad)
    kernel = W[::-1, ::-1, :, :] if bug == "kernel_flipped" else W  # scipy's convolve2d
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vert_start, horiz_start = h * stride, w * stride
                    a_slice_prev = A_prev_pad[
                        i, vert_start : vert_start + f, horiz_start : horiz_start + f, :
                    ]
                    Z[i, h, w, c] = np.sum(a_slice_prev * kernel[:, :, :, c]) + b[0, 0, 0, c]
    return Z, (A_prev, W, b, hparameters)


def conv_backward(dZ, cache, bug):
    A_prev, W, b, hparameters = cache
    m, n_H_prev, n_W_prev, _ = A_prev.shape
    f = W.shape[0]
    stride, pad = hparameters["stride"], hparameters["pad"]
    _, n_H, n_W, n_C = dZ.shape
    dA_prev_pad = zero_pad(np.zeros(A_prev.shape), pad)
    dW, db = np.zeros(W.shape), np.zeros(b.shape)
    A_prev_pad = zero_pad(A_prev, pad)
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    if bug == "stride_ignored_in_conv":
                        vert_start, horiz_start = h, w
                    else:
                        vert_start, horiz_start = h * stride, w * stride
                    rows = slice(vert_start, vert_start + f)
                    cols = slice(horiz_start, horiz_start + f)
                    dA_prev_pad[i, rows, cols, :] += W[:, :, :, c] * dZ[i, h, w, c]
                    dW[:, :, :, c] += A_prev_pad[i, rows, cols, :] * dZ[i, h, w, c]
                    db[:, :, :, c] += dZ[i, h, w, c]
    if bug == "dx_still_padded":
        return dA_prev_pad, dW, db
    return dA_prev_pad[:, pad : pad + n_H_prev, pad : pad + n_W_prev, :], dW, db


def create_mask_from_window(x):
    return x == np.max(x)


def distribute_value(dz, shape):
    n_H, n_W = shape
    return np.ones(shape) * dz / (n_H * n_W)


def pool_forward(A_prev, hparameters, mode):
    m, n_H_prev, n_W_prev, n_C = A_prev.shape
    f, stride = hparameters["f"], hparameters["stride"]
    n_H, n_W = int(1 + (n_H_prev - f) / stride), int(1 + (n_W_prev - f) / stride)
    A = np.zeros((m, n_H, n_W, n_C))
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    window = A_prev[i, h * stride : h * stride + f, w * stride : w * stride + f, c]
                    A[i, h, w, c] = np.max(window) if mode == "max" else np.mean(window)
    return A, (A_prev, hparameters)


def pool_backward(dA, cache, mode, bug):
    A_prev, hparameters = cache
    f, stride = hparameters["f"], hparameters["stride"]
    m, n_H, n_W, n_C = dA.shape
    dA_prev = np.zeros(A_prev.shape)
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    if bug == "stride_ignored_in_pool":
                        vert_start, horiz_start = h, w
                    else:
                        vert_start, horiz_start = h * stride, w * stride
                    rows = slice(vert_start, vert_start + f)
                    cols = slice(horiz_start, horiz_start + f)
                    if mode == "max":
                        mask = create_mask_from_window(A_prev[i, rows, cols, c])
                        if bug == "maxpool_gradient_to_all":
                            mask = np.ones((f, f))
                        dA_prev[i, rows, cols, c] += mask * dA[i, h, w, c]
                    elif bug == "avgpool_not_divided":
                        dA_prev[i, rows, cols, c] += np.ones((f, f)) * dA[i, h, w, c]
                    else:
                        dA_prev[i, rows, cols, c] += distribute_value(dA[i, h, w, c], (f, f))
    return dA_prev


def ng_student(arrays, pool, bug):
    X, y, W1, b1, W2, b2, W3, b3 = arrays
    m = X.shape[0]
    Z0, c0 = conv_forward(X, W1, b1, {"stride": 1, "pad": 1}, bug)
    A0 = relu(Z0)
    P1, c1 = pool_forward(A0, {"f": 2, "stride": 2}, pool)
    Z2, c2 = conv_forward(P1, W2, b2, {"stride": 2, "pad": 0}, bug)
    A2 = relu(Z2)
    flat = A2.reshape(m, -1)
    loss, dZ3 = softmax_head(flat, W3, b3, y)  # dZ = A - Y: the 1/m goes in dW and db
    dW3, db3 = 1 / m * flat.T @ dZ3, 1 / m * np.sum(dZ3, axis=0)
    dZ2 = (dZ3 @ W3.T).reshape(A2.shape) * (Z2 > 0)
    dA1, dW2, db2 = conv_backward(dZ2, c2, bug)
    dA0 = pool_backward(dA1, c1, pool, bug)
    dZ0 = dA0 * (Z0 > 0)
    dX, dW1, db1 = conv_backward(dZ0, c0, bug)
    return loss, [
        {"z": Z0, "dx": dX, "dW": dW1 / m, "db": db1 / m},
        {"dx": dA0},
        {"z": Z2, "dx": dA1, "dW": dW2 / m, "db": db2 / m},
        {},
        {"dW": dW3, "db": db3},
    ]


# -- the problem, in each course's layout -----------------------------------------------------


def problem(course: str, pool: str, seed: int = 15, batch: int = BATCH):
    """(the request without its submission, the student's arrays in the course's layout)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, 2, 10, 10))  # canonical NCHW
    w1, b1 = rng.normal(size=(3, 2, 3, 3)) * 0.5, rng.normal(size=3) * 0.1
    w2, b2 = rng.normal(size=(4, 3, 3, 3)) * 0.5, rng.normal(size=4) * 0.1
    W3, b3 = rng.normal(size=(16, 3)) * 0.5, rng.normal(size=3) * 0.1
    y = rng.integers(0, 3, size=batch)
    nhwc = course == "ng"
    if nhwc:  # Ng's A_prev (m, n_H, n_W, n_C), W (f, f, n_C_prev, n_C), b (1, 1, 1, n_C)
        x = x.transpose(0, 2, 3, 1)
        w1, w2 = w1.transpose(2, 3, 1, 0), w2.transpose(2, 3, 1, 0)
        b1, b2 = b1.reshape(1, 1, 1, -1), b2.reshape(1, 1, 1, -1)
    kind = "maxpool2d" if pool == "max" else "avgpool2d"
    pool_layer = {"type": kind, "pool": 2}  # stride: the pool's, 2
    if kind == "maxpool2d":
        pool_layer["ties"] = "all" if nhwc else "first"
    request = {
        "layout": "NHWC" if nhwc else "NCHW",
        "convention": "numpy",
        "dz_scale": "per_sample" if nhwc else "reduced",
        "inputs": x.tolist(),
        "targets": y.tolist(),
        "loss": "cross_entropy",
        "layers": [
            {"type": "conv2d", "weights": w1.tolist(), "biases": b1.tolist(), "pad": 1},
            pool_layer,
            {"type": "conv2d", "weights": w2.tolist(), "biases": b2.tolist(), "stride": 2},
            {"type": "flatten"},
            {"weights": W3.tolist(), "biases": b3.tolist(), "activation": "softmax"},
        ],
    }
    for i in (0, 2):
        request["layers"][i]["activation"] = "relu"
    return request, (x, y, w1, b1, w2, b2, W3, b3)


STUDENTS = {"cs231n": cs231n_student, "ng": ng_student}
FIELDS = (
    "loss",
    *(f"layers.0.{n}" for n in ("z", "dx", "dW", "db")),
    "layers.1.dx",
    *(f"layers.2.{n}" for n in ("z", "dx", "dW", "db")),
    "layers.4.dW",
    "layers.4.db",
)
#: what the pool's mistake (or a stride ignored in the second conv) reaches: its own dx and
#: every field below it
BELOW_POOL = ("layers.1.dx", "layers.0.dx", "layers.0.dW", "layers.0.db")
#: bug -> (its code, the fields it corrupts); every other field passes
BUGS = {
    "dx_still_padded": ("dx_still_padded", ("layers.0.dx",)),
    "kernel_flipped": ("kernel_flipped", FIELDS),
    "stride_ignored_in_conv": (
        "stride_ignored_in_backward",
        ("layers.2.dx", "layers.2.dW", *BELOW_POOL),
    ),
    "stride_ignored_in_pool": ("stride_ignored_in_backward", BELOW_POOL),
    "maxpool_gradient_to_all": ("maxpool_gradient_to_all", BELOW_POOL),
    "avgpool_not_divided": ("avgpool_not_divided", BELOW_POOL),
}
#: the other two forms of a flipped kernel, as CS231n students write them
CS231N_ONLY = {
    # w = w[:, :, ::-1, ::-1] before the cache: dx's loop multiplies by the flipped kernel too
    "kernel_flipped_everywhere": ("kernel_flipped", FIELDS),
    # the forward is right; dx multiplies by the flipped kernel ("full convolution with the
    # rotated kernel", done with convolve2d, which flips it back)
    "kernel_flipped_in_dx": ("kernel_flipped", ("layers.2.dx", *BELOW_POOL)),
}


def cases():
    for course in STUDENTS:
        bugs = {**BUGS, **(CS231N_ONLY if course == "cs231n" else {})}
        for bug in ("none", *bugs):
            for pool in ("max", "avg"):
                if (bug, pool) in (
                    ("maxpool_gradient_to_all", "avg"),
                    ("avgpool_not_divided", "max"),
                ):
                    continue
                yield pytest.param(course, pool, bug, id=f"{course}-{pool}pool-{bug}")


def submit(client, course: str, pool: str, bug: str) -> dict:
    request, arrays = problem(course, pool)
    loss, layers = STUDENTS[course](arrays, pool, bug)
    submission = {
        "loss": float(loss),
        "layers": [
            {name: np.asarray(v).tolist() for name, v in fields.items()} for fields in layers
        ],
    }
    response = client.post("/v1/check", json=request | {"submission": submission})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize(("course", "pool", "bug"), list(cases()))
def test_each_students_conv_bug_names_itself_on_every_field_it_corrupts(client, course, pool, bug):
    answer = submit(client, course, pool, bug)
    got = {r["field"]: r["diagnosis"] for r in answer["results"]}
    code, corrupted = {**BUGS, **CS231N_ONLY}.get(bug, (None, ()))
    assert got == {field: code if field in corrupted else None for field in FIELDS}
    for result in answer["results"]:
        if result["diagnosis"] is not None:
            assert result["message"].startswith(
                (f"{result['field']} has shape", "In layer", "In layers", "This error")
            ), result["message"]


def test_a_mistake_in_the_forward_pass_is_carried_forward_to_the_loss_and_later_layers(client):
    answer = submit(client, "cs231n", "max", "kernel_flipped")
    messages = {r["field"]: r["message"] for r in answer["results"]}
    assert messages["loss"].startswith(
        "This error comes from a mistake in layers 0 and 2, carried forward to the loss: the "
        "kernel was flipped (rotated 180 degrees)"
    )
    assert messages["layers.4.dW"].startswith(
        "This error comes from a mistake in layers 0 and 2, carried forward to layer 4:"
    )
    assert messages["layers.0.z"].startswith("In layer 0, the kernel was flipped")
    assert messages["layers.1.dx"].startswith(
        "This error comes from a mistake in layers 0 and 2, propagated back to layer 1:"
    )


def test_every_conv_code_is_in_the_documented_enum_of_diagnoses():
    assert set(CODES) >= {
        "kernel_flipped",
        "stride_ignored_in_backward",
        "maxpool_gradient_to_all",
        "avgpool_not_divided",
    }
    assert {*CODES, "dx_still_padded"} <= set(DIAGNOSES)


# -- the messages: words where no one line of NumPy fixes a loop; the padded dx's crop runs ------


def images(x: np.ndarray, layout: str) -> np.ndarray:
    return x.transpose(0, 2, 3, 1) if layout == "NHWC" else x


def grader_for(request: dict) -> Grader:
    submission = {"layers": [{"dx": [[0.0]]}, *([None] * (len(request["layers"]) - 1))]}
    return Grader(
        CheckRequestSchema().load(request | {"submission": submission}).gradients, Tolerance()
    )


def every_message(grader: Grader) -> list:
    """(field, diagnosis, message) for each mistaken pass submitted whole."""
    problem = grader.request.problem
    names = ("z", "a", "dz", "dx", "dW", "db")
    found = []
    for variant in grader.mistaken_passes():
        layers = tuple(
            {n: grader.value(variant.result, i, n) for n in names if _has(grader, i, n)}
            for i in range(len(problem.layers))
        )
        report = grader.grade(Submission(loss=variant.result.loss, layers=layers))
        found += [(r.field, r.diagnosis, r.message) for r in report.results if not r.passed]
    return found


def _has(grader: Grader, i: int, name: str) -> bool:
    out = grader.reference.layers[i]
    return name in ("z", "a", "dz", "dx") or name in out.grads


@pytest.mark.parametrize("course", ["cs231n", "ng"])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_conv_messages_say_the_fix_in_words_and_every_quoted_statement_parses(course, pool):
    request, _ = problem(course, pool)
    found = every_message(grader_for(request))
    codes = {code for _, code, _ in found}
    pool_code = "maxpool_gradient_to_all" if pool == "max" else "avgpool_not_divided"
    assert {"kernel_flipped", "stride_ignored_in_backward", pool_code} <= codes
    for _, code, message in found:
        for snippet in SNIPPET.findall(message):
            ast.parse(snippet)
        if code in CODES:  # a loop over windows: no backticks, the fix is a sentence
            assert "`" not in message, message
            assert message.rstrip().endswith("."), message
            assert len(message) < 1200


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(
    ("pad", "crop"), [(1, "1:-1, 1:-1"), ([2, 0], "2:-2, :"), ([1, 3], "1:-1, 3:-3")]
)
def test_a_padded_dx_is_named_and_its_quoted_crop_computes_the_right_dx(client, layout, pad, crop):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 5, 6))
    request = {
        "layout": layout,
        "inputs": images(x, layout).tolist(),
        "layers": [
            {
                "type": "conv2d",
                "weights": rng.normal(size=(3, 3, 3, 3)).tolist(),  # 3x3, 3 channels, 3 filters
                "pad": pad,
                "stride": 1,
            }
        ],
        "upstream": None,
    }
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    ho, wo = 5 + 2 * ph - 2, 6 + 2 * pw - 2
    request["upstream"] = images(rng.normal(size=(2, 3, ho, wo)), layout).tolist()
    right = np.array(
        client.post("/v1/gradients", json=request | {"include": ["dx"]}).get_json()["layers"][0][
            "dx"
        ]
    )
    border = rng.normal(size=images(np.zeros((2, 3, 5 + 2 * ph, 6 + 2 * pw)), layout).shape)
    dx_pad = border.copy()
    inner = (slice(None), slice(ph, ph + 5), slice(pw, pw + 6))
    if layout == "NHWC":
        dx_pad[(*inner, slice(None))] = right
    else:
        dx_pad[(slice(None), slice(None), *inner[1:])] = right
    response = client.post(
        "/v1/check", json=request | {"submission": {"layers": [{"dx": dx_pad.tolist()}]}}
    )
    [result] = response.get_json()["results"]
    assert result["diagnosis"] == "dx_still_padded"
    index = f":, {crop}, :" if layout == "NHWC" else f":, :, {crop}"
    assert result["message"].endswith(f"Fix: `dx = dx_pad[{index}]`.")
    statement = FIX.search(result["message"]).group(2)
    scope = {"np": np, "dx_pad": dx_pad}
    exec(statement, scope)
    np.testing.assert_allclose(scope["dx"], right, rtol=1e-12)
    # the padded shape with a wrong interior is no padded dx: the plain wrong_shape
    dx_pad[(0, ph, pw, 0) if layout == "NHWC" else (0, 0, ph, pw)] += 1.0
    response = client.post(
        "/v1/check", json=request | {"submission": {"layers": [{"dx": dx_pad.tolist()}]}}
    )
    assert response.get_json()["results"][0]["diagnosis"] == "wrong_shape"


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_max_pool_ties_all_is_no_mistake_but_the_gradient_to_every_position_is(client, layout):
    """Ng's mask = (x == np.max(x)) sends the gradient to every tied maximum: with "ties":
    "all" that is right even in a window where every position ties; sending it to every
    position of the windows that do not tie is maxpool_gradient_to_all."""
    x = np.array([[[[1.0, 1.0, 0.0, 3.0], [1.0, 1.0, 2.0, 1.0]]]])  # window 0 all tied
    dout = np.array([[[[5.0, 7.0]]]])
    request = {
        "layout": layout,
        "inputs": images(x, layout).tolist(),
        "layers": [{"type": "maxpool2d", "pool": 2, "ties": "all"}],
        "upstream": images(dout, layout).tolist(),
    }
    ng = np.array([[[[5.0, 5.0, 0.0, 7.0], [5.0, 5.0, 0.0, 0.0]]]])  # mask * dA
    to_all = np.array([[[[5.0, 5.0, 7.0, 7.0], [5.0, 5.0, 7.0, 7.0]]]])
    for submitted, code in ((ng, None), (to_all, "maxpool_gradient_to_all")):
        body = {"submission": {"layers": [{"dx": images(submitted, layout).tolist()}]}}
        answer = client.post("/v1/check", json=request | body).get_json()
        assert [r["diagnosis"] for r in answer["results"]] == [code]


def test_the_grader_prices_every_conv_mistake_it_may_recompute():
    """kernel_flipped's two forward forms rerun the forward pass, in each
    conv alone and in both, in the problem's and the other placement of the 1/N; the
    backward form one pass; the ignored stride (second conv only, and the max pool), the
    gradient to every position: one scope each, one pass."""
    from service.core.mistakes import plan

    request, _ = problem("cs231n", "max")
    grader = grader_for(request)
    conv = [p for p in plan(grader.request.problem) if p.code in CODES]
    assert len(conv) == (3 * 2 + 3 * 2) + 3 * 2 + 2 + 2 + 2
    # a forward rerun is one more pass of work, shared by the placements of one scope
    reruns = {p.kind_of for p in conv if p.changes_forward}
    assert len(reruns) == 3 + 3
    assert reruns_forward(grader.request.problem)
    # the reference, the 13 passes of the activation and loss catalogue, the conv's 24 and
    # their 6 forward reruns
    assert passes_needed(grader.request.problem) == 1 + 13 + 24 + 6


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_every_conv_mistaken_pass_one_at_a_time_stays_within_the_estimate(pool):
    """The forward reruns (the flipped kernel's forms "forward" and "layer") hold their own
    z and a beside the reference's: the cost model prices one rerun alive at a time
    (reruns_forward), and the grader's passes, one at a time, stay within it."""
    from tests.memory_cases import assert_every_pass_within_estimate

    request, _ = problem("cs231n", pool, batch=64)
    assert_every_pass_within_estimate(grader_for(request).request.problem)
