"""The independent oracle: PyTorch autograd in float64, fed the client's request as sent.

Nothing here uses the service's code.  Each convention's forward formula is
written out in torch with the arrays in the client's own layout, so autograd
returns dW and db in exactly the shapes the client sent: if the service's
conversions were wrong, the two would disagree.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def _activation(name: str, z: torch.Tensor, unit_dim: int) -> torch.Tensor:
    if name in ("identity", "linear"):
        return z
    if name == "sigmoid":
        return torch.sigmoid(z)
    if name == "tanh":
        return torch.tanh(z)
    if name == "relu":
        return F.relu(z)
    if name == "leaky_relu":
        return F.leaky_relu(z, negative_slope=0.01)
    if name == "softplus":
        # the exact log(1 + e^z); F.softplus switches to z above a threshold
        return torch.logaddexp(z, torch.zeros_like(z))
    if name == "softmax":
        return torch.softmax(z, dim=unit_dim)
    raise ValueError(name)


def _dense(layer: dict, a: torch.Tensor, convention: str) -> tuple[torch.Tensor, dict]:
    """z in the convention's formula; the leaves by the name of their gradient."""
    w = torch.tensor(layer["weights"], requires_grad=True)
    b = layer.get("biases")
    b = None if b is None else torch.tensor(b, requires_grad=True)
    if convention == "numpy":
        z = a @ w
    elif convention == "torch":
        z = a @ w.T
    else:
        z = w @ a
    if b is not None:
        z = z + b
    return z, {"dW": w} | ({} if b is None else {"db": b})


def _batchnorm(layer: dict, a: torch.Tensor, columns: bool, nhwc: bool = False):
    """torch's batch_norm on the client's (batch, n) rows (columns: transposed in and out), or
    on 4-D images (spatial: per channel over N, H, W; NHWC permuted to torch's NCHW and back);
    gamma and beta in the shape sent, so their gradients come back in it.

    The unbiased variance (makemore) is written out: torch normalises with the biased one.
    The running average is CS231n's, written out too: torch's momentum weights the batch
    and its running variance is always the unbiased one.
    """
    gamma = torch.tensor(layer["gamma"], requires_grad=True)
    beta = torch.tensor(layer["beta"], requires_grad=True)
    eps, mode = layer.get("eps", 1e-5), layer.get("mode", "train")
    images = a.ndim == 4
    x = _to_nchw(a, nhwc) if images else a.T if columns else a
    dims = (0, 2, 3) if images else (0,)
    per_feature = (1, -1, 1, 1) if images else (-1,)
    g, b = gamma.reshape(-1), beta.reshape(-1)
    unbiased = layer.get("variance", "biased") == "unbiased"
    state = {}
    if mode == "eval":
        mean = torch.tensor(layer["running_mean"]).reshape(-1)
        var = torch.tensor(layer["running_var"]).reshape(-1)
        z = F.batch_norm(x, mean, var, g, b, training=False, eps=eps)
    elif unbiased:
        var = x.var(dim=dims, unbiased=True, keepdim=True)
        x_hat = (x - x.mean(dim=dims, keepdim=True)) / torch.sqrt(var + eps)
        z = x_hat * g.reshape(per_feature) + b.reshape(per_feature)
    else:
        z = F.batch_norm(x, None, None, g, b, training=True, eps=eps)
    if mode == "train" and "running_mean" in layer and "running_var" in layer:
        momentum = layer.get("momentum", 0.9)
        batch_var = x.var(dim=dims, unbiased=unbiased).detach()
        for name, batch_stat in (
            ("running_mean", x.mean(dim=dims).detach()),
            ("running_var", batch_var),
        ):
            running = np.asarray(layer[name])
            updated = momentum * running.reshape(-1) + (1 - momentum) * batch_stat.numpy()
            state[name] = updated.reshape(running.shape)
    z = _from_nchw(z, nhwc) if images else z.T if columns else z
    return z, {"dgamma": gamma, "dbeta": beta}, state


def _layernorm(layer: dict, a: torch.Tensor, columns: bool, nhwc: bool = False):
    """torch's layer_norm over each sample's features (columns: transposed in and out)."""
    gamma = torch.tensor(layer["gamma"], requires_grad=True)
    beta = torch.tensor(layer["beta"], requires_grad=True)
    x = a.T if columns else a
    n = x.shape[1]
    z = F.layer_norm(x, (n,), gamma.reshape(-1), beta.reshape(-1), eps=layer.get("eps", 1e-5))
    return (z.T if columns else z), {"dgamma": gamma, "dbeta": beta}, {}


def _groupnorm(layer: dict, a: torch.Tensor, columns: bool, nhwc: bool = False):
    """torch's group_norm on the images as sent (NHWC permuted to NCHW and back); gamma and
    beta leaves in the shapes sent."""
    gamma = torch.tensor(layer["gamma"], requires_grad=True)
    beta = torch.tensor(layer["beta"], requires_grad=True)
    z = F.group_norm(
        _to_nchw(a, nhwc),
        layer["groups"],
        gamma.reshape(-1),
        beta.reshape(-1),
        eps=layer.get("eps", 1e-5),
    )
    return _from_nchw(z, nhwc), {"dgamma": gamma, "dbeta": beta}, {}


NORMS = {"batchnorm": _batchnorm, "layernorm": _layernorm, "groupnorm": _groupnorm}


def _pair(value, default) -> tuple[int, int]:
    value = default if value is None else value
    return tuple(value) if isinstance(value, list) else (value, value)


def _to_nchw(a: torch.Tensor, nhwc: bool) -> torch.Tensor:
    return a.permute(0, 3, 1, 2) if nhwc else a


def _from_nchw(a: torch.Tensor, nhwc: bool) -> torch.Tensor:
    return a.permute(0, 2, 3, 1) if nhwc else a


def _conv2d(layer: dict, a: torch.Tensor, nhwc: bool) -> tuple[torch.Tensor, dict]:
    """F.conv2d on the input as sent (NHWC permuted to torch's NCHW and back); the weights
    and biases are leaves in the shapes sent ((HH, WW, C, F) in NHWC, Ng's (1, 1, 1, F))."""
    w = torch.tensor(layer["weights"], requires_grad=True)
    b = layer.get("biases")
    b = None if b is None else torch.tensor(b, requires_grad=True)
    z = F.conv2d(
        _to_nchw(a, nhwc),
        w.permute(3, 2, 0, 1) if nhwc else w,
        None if b is None else b.reshape(-1),
        stride=_pair(layer.get("stride"), 1),
        padding=_pair(layer.get("pad"), 0),
    )
    return _from_nchw(z, nhwc), {"dW": w} | ({} if b is None else {"db": b})


def _pool(layer: dict, a: torch.Tensor, nhwc: bool) -> torch.Tensor:
    pool = _pair(layer["pool"], None)
    stride = _pair(layer.get("stride"), layer["pool"])
    x = _to_nchw(a, nhwc)
    if layer["type"] == "avgpool2d":
        out = F.avg_pool2d(x, pool, stride)
    elif layer.get("ties", "first") == "first":
        out = F.max_pool2d(x, pool, stride)
    else:  # Ng's mask = (x == max): the whole gradient to every tied position
        windows = x.unfold(2, pool[0], stride[0]).unfold(3, pool[1], stride[1])
        top = windows.amax(dim=(-2, -1), keepdim=True).detach()
        mask = (windows.detach() == top).to(x.dtype)
        out = top[..., 0, 0] + ((windows - windows.detach()) * mask).sum(dim=(-2, -1))
    return _from_nchw(out, nhwc)


def reference(request: dict) -> dict:
    """loss, and per layer z, a, dz, dx and its parameters' gradients (dW, db; dgamma,
    dbeta), and a batchnorm's updated running statistics (client's shapes) as NumPy arrays.

    A dropout layer ({"type": "dropout", "keep_prob", "mask" or "seed"}) has no dW or db.

    A layer without "biases" (or null) has no bias and no db; with "upstream" the
    backward pass starts from dL/d(last output) = upstream and the loss is None.
    """
    convention = request.get("convention", "numpy")
    columns = convention == "columns"
    nhwc = request.get("layout", "NCHW") == "NHWC"
    unit_dim = 0 if columns else 1
    a = torch.tensor(request["inputs"], requires_grad=True)

    params, inputs, zs, outs, states = [], [], [], [], []
    for layer in request["layers"]:
        inputs.append(a)
        kind = layer.get("type", "dense")
        if kind in NORMS:
            z, named, state = NORMS[kind](layer, a, columns, nhwc)
        elif kind == "dropout":
            z, named, state = _dropout(layer, a), {}, {}
        elif kind == "conv2d":
            (z, named), state = _conv2d(layer, a, nhwc), {}
        elif kind in ("maxpool2d", "avgpool2d"):
            z, named, state = _pool(layer, a, nhwc), {}, {}
        elif kind == "flatten":  # the client's own layout's order: NCHW or NHWC as sent
            rows = a.reshape(a.shape[0], -1)
            z, named, state = (rows.T if columns else rows), {}, {}
        else:
            (z, named), state = _dense(layer, a, convention), {}
        z.retain_grad()
        a = _activation(layer.get("activation") or "identity", z, unit_dim)
        a.retain_grad()
        params.append(named)
        states.append(state)
        zs.append(z)
        outs.append(a)

    if "upstream" in request:
        loss = (outs[-1] * torch.tensor(request["upstream"])).sum()
    else:
        loss = _loss(request, zs[-1], outs[-1], columns)
    l2 = request.get("l2", 0.0)
    if l2:
        factor = 0.5 * l2 if request.get("l2_style", "half") == "half" else l2
        loss = loss + factor * sum((p["dW"] ** 2).sum() for p in params if "dW" in p)
    loss.backward()

    return {
        "loss": None if "upstream" in request else loss.item(),
        "layers": [
            {
                "z": z.detach().numpy(),
                "a": out.detach().numpy(),
                "dz": z.grad.numpy(),
                "dx": x.grad.numpy(),
                **{name: p.grad.numpy() for name, p in named.items()},
                **state,
            }
            for named, state, x, z, out in zip(params, states, inputs, zs, outs)
        ],
    }


def _dropout(layer: dict, a: torch.Tensor) -> torch.Tensor:
    """Inverted dropout, x * mask / keep_prob, on the input in the client's own layout.

    The mask is the one sent, or the contract's draw from the seed:
    np.random.default_rng(seed).random(shape) < keep_prob, shape being the input's as sent.
    """
    keep_prob = layer["keep_prob"]
    if layer.get("mask") is not None:
        mask = torch.tensor(layer["mask"])
    else:
        drawn = np.random.default_rng(layer["seed"]).random(tuple(a.shape)) < keep_prob
        mask = torch.tensor(drawn.astype(np.float64))
    return a * mask / keep_prob


def _loss(request: dict, z: torch.Tensor, a: torch.Tensor, columns: bool) -> torch.Tensor:
    reduction = request.get("reduction", "mean")
    z_rows, a_rows = (t.T if columns else t for t in (z, a))
    loss_name = request["loss"]
    if _class_labels(request, z_rows.shape[1], columns):
        labels = torch.tensor(np.reshape(request["targets"], -1), dtype=torch.long)
        if loss_name == "cross_entropy":
            return F.cross_entropy(z_rows, labels, reduction=reduction)
        if loss_name == "svm":
            return _svm(a_rows, labels, reduction)
        raise ValueError(f"{loss_name} takes no class labels")
    y = torch.tensor(request["targets"])
    y_rows = y.T if columns else y
    if loss_name == "mse":
        return F.mse_loss(a_rows, y_rows, reduction=reduction)
    if loss_name == "half_mse":
        return 0.5 * F.mse_loss(a_rows, y_rows, reduction=reduction)
    if loss_name == "bce":
        return F.binary_cross_entropy_with_logits(z_rows, y_rows, reduction=reduction)
    if loss_name == "cross_entropy":
        return F.cross_entropy(z_rows, y_rows, reduction=reduction)
    if loss_name == "svm":  # one-hot rows: the class is where the 1 is
        return _svm(a_rows, y_rows.argmax(dim=1), reduction)
    if loss_name == "hinge":
        per_element = F.relu(1.0 - y_rows * a_rows)
        return per_element.mean() if reduction == "mean" else per_element.sum()
    raise ValueError(loss_name)


def _class_labels(request: dict, classes: int, columns: bool) -> bool:
    """The contract's rule: (batch,), or (1, batch) in columns with more than one class."""
    if request["loss"] not in ("cross_entropy", "svm"):
        return False
    shape = np.shape(request["targets"])
    return len(shape) == 1 or (columns and shape[0] == 1 and classes > 1)


def _svm(scores: torch.Tensor, labels: torch.Tensor, reduction: str) -> torch.Tensor:
    """CS231n's multiclass SVM: per sample, sum over j != y of max(0, s_j - s_y + 1).

    max(0, .) is F.relu, whose derivative at exactly 0 is 0 as in CS231n's svm_loss
    (margins > 0) and torch's multi_margin_loss; torch.clamp's would be 1.
    """
    correct = scores.gather(1, labels[:, None])
    others = torch.ones_like(scores).scatter(1, labels[:, None], 0.0)
    per_sample = (F.relu(scores - correct + 1.0) * others).sum(dim=1)
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


def assert_close(actual, expected, what: str, rtol: float = 1e-9) -> None:
    """Relative error at most rtol, with an absolute floor far below it for exact zeros."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    floor = 1e-13 * max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=floor, err_msg=what)


#: the answer's gradients, named after their parameters; and the per-layer arrays of include
GRADIENTS = ("dW", "db", "dgamma", "dbeta")
PER_LAYER = ("z", "a", "dz", "dx")


def assert_matches_torch(answer: dict, request: dict) -> dict:
    """The service's answer agrees with torch: the loss (or its absence with upstream), every
    gradient torch computes and no other, every state it computes (a batchnorm's running
    statistics), each per-layer array the answer includes, and with a learning_rate every
    parameter after the step.  Returns torch's answer."""
    expected = reference(request)
    if expected["loss"] is None:
        assert answer["loss"] is None
    else:
        assert_close(answer["loss"], expected["loss"], "loss")
    for i, (got, want) in enumerate(zip(answer["layers"], expected["layers"], strict=True)):
        gradients = {name for name in want if name in GRADIENTS}
        assert {name for name in got if name in GRADIENTS} == gradients, (
            f"layers.{i}: answered {sorted(got)}, torch has {sorted(want)}"
        )
        computed = [name for name in want if name not in PER_LAYER]
        for name in (*computed, *[name for name in PER_LAYER if name in got]):
            assert_close(got[name], want[name], f"layers.{i}.{name}")
    if "learning_rate" in request:
        step = request["learning_rate"]
        pairs = {"weights": "dW", "biases": "db", "gamma": "dgamma", "beta": "dbeta"}
        for i, (sent, want, updated) in enumerate(
            zip(request["layers"], expected["layers"], answer["updated_layers"], strict=True)
        ):
            assert set(updated) == {p for p in pairs if sent.get(p) is not None}, f"updated {i}"
            for param in updated:
                stepped = np.asarray(sent[param]) - step * want[pairs[param]]
                assert_close(updated[param], stepped, f"updated_layers.{i}.{param}")
    return expected
