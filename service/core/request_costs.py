"""Each endpoint's request priced from its shapes (service.core.cost), before anything runs."""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from .cost import (
    NUMBER,
    SCRATCH,
    SMALLER,
    Cost,
    NetworkShape,
    Part,
    Shape,
    answer_part,
    cost_of,
    held,
    parse_part,
    passes_parts,
    read_part,
    result_shapes,
    state_text,
)

#: every gradient a layer kind answers, first parameter's then second's (dense, the norms)
GRADIENT_ORDER = ("dW", "db", "dgamma", "dbeta")
#: text of one graded field's result (its message, shapes and errors), generously
FIELD_TEXT = 2048
#: messages a submission graded as broken answers at most (one field path each)
BROKEN_ERRORS = 10
#: one submitted number against one expected value: subtract, abs, scale, add, compare
COMPARE_FLOPS = 8


def gradients_cost(
    net: NetworkShape,
    include: Sequence[str] = ("a",),
    encoding: str = "json",
    gradient_check: bool = False,
    learning_rate: bool = False,
    body: int = 0,
) -> Cost:
    """POST /v1/gradients: one forward and backward pass, and its answer."""
    parts = [read_part(body), held(net.elements()), *passes_parts(net)]
    flops = net.flops()
    if gradient_check:
        parts.append(gradient_check_part(net, check_dx="dx" in include))
        flops += gradient_check_flops(net, check_dx="dx" in include)
    shapes = result_shapes(net, include)
    if "dx" in include:  # each dx is kept for the answer, not freed after its step
        parts.append(
            Part(
                "every layer's dx (include)",
                NUMBER * net.batch * sum(layer.n_in for layer in net.layers),
                'leave "dx" out of include, or send a smaller batch',
            )
        )
    if learning_rate:
        updated = [shape for layer in net.layers for shape in layer.parameters]
        sizes = [prod(shape) for shape in updated]
        parts.append(
            Part(
                "the updated layers (learning_rate)",
                NUMBER * (sum(sizes) + max(sizes)),  # W - lr * dW: lr * dW first
                "leave learning_rate out, or send narrower layers",
            )
        )
        shapes += updated
    if encoding == "base64":
        fix = 'ask for fewer arrays ("include": []), or send a smaller batch'
    else:
        fix = 'ask for "encoding": "base64" (11 bytes a number, not 25) or fewer arrays ("include")'
    holding = state_text(net)
    if holding:  # a drawn mask is answered whatever include says
        fix += "; a mask drawn from a seed is answered too: send a smaller batch"
    parts.append(answer_part(shapes, encoding, fix, holding=holding))
    return cost_of(parts, flops, parse_part(body, net.sent()))


def gradient_check_part(net: NetworkShape, check_dx: bool = False) -> Part:
    """Every layer's input, kept for the nudges; one re-run forward pass; the copies of the
    nudged array (a parameter, or with ``check_dx`` a layer's input)."""
    inputs = sum(net.batch * layer.n_in for layer in net.layers[1:])
    widest = max(net.batch * layer.n_out for layer in net.layers)
    nudged = [prod(shape) for layer in net.layers for shape in layer.parameters]
    if check_dx:
        nudged += [net.batch * layer.n_in for layer in net.layers]
    largest = max(nudged, default=1)
    return Part(
        "the gradient check's layer inputs and re-run forward passes",
        NUMBER * (inputs + 3 * widest + SCRATCH * largest),
        "leave gradient_check off, or check a smaller batch",
    )


def gradient_check_flops(net: NetworkShape, check_dx: bool = False) -> int:
    """Two forward passes from a parameter's layer onward, for every parameter (and, with
    ``check_dx``, for every number of every layer's input)."""
    costs = net.costs()
    total = 0
    for i, layer in enumerate(net.layers):
        nudged = sum(prod(shape) for shape in layer.parameters)
        if check_dx:
            nudged += net.batch * layer.n_in
        total += nudged * 2 * sum(cost.forward_flops for cost in costs[i:])
    return total


def field_shape(net: NetworkShape, layer: int, name: str) -> Shape:
    """The shape of one graded field's expected value (canonical; the client's has as many)."""
    shape = net.layers[layer]
    if name in ("z", "a", "dz"):
        return (net.batch, *shape.out_shape)
    if name == "dx":
        return (net.batch, *shape.in_shape)
    # a gradient: its parameter's shape, parameters in their gradients' order (dW, db; ...)
    return shape.parameters[min(GRADIENT_ORDER.index(name) % 2, len(shape.parameters) - 1)]


def grading_passes_parts(
    net: NetworkShape, passes: int, reruns_forward: bool = False, keep_dx: bool = False
) -> list[Part]:
    """What the grader's passes hold at its peak: the reference pass and the one mistaken pass
    alive beside it (service.grading walks the catalogue once and frees each pass before the
    next is computed), whatever the catalogue's length; with ``reruns_forward`` (a mistake
    inside a layer kind's forward), that pass's own forward; with ``keep_dx``, both passes'
    dx of every layer."""
    alive = min(passes, 2)
    parts = passes_parts(net, alive)
    if reruns_forward:
        parts.append(
            Part(
                "a mistaken pass's own forward pass (a mistake inside a layer's forward)",
                NUMBER * sum(cost.kept for cost in net.costs()),
                SMALLER,
            )
        )
    if keep_dx:
        parts.append(
            Part(
                f"every layer's dx, kept by {alive} passes at a time",
                NUMBER * alive * net.batch * sum(layer.n_in for layer in net.layers),
                "leave dx out of the submission, or send a smaller batch",
            )
        )
    return parts


def grading_cost(
    net: NetworkShape,
    passes: int,
    submitted: int,
    fields: Sequence[tuple[int, str]],
    reveal: bool = False,
    body: int = 0,
    submissions: int = 1,
    broken: int = 0,
    reruns_forward: bool = False,
) -> Cost:
    """POST /v1/check: the reference pass and one mistaken pass at a time (``passes`` counts
    them all, the reference's included: their FLOPs), and the comparisons of the largest field.

    POST /v1/check/batch is the same with ``submissions`` graded by one grader: ``submitted``
    and ``fields`` are every submission's, all held at once (parsed together), the passes
    still computed once and one at a time; each answer adds its own text, a ``broken`` one up
    to BROKEN_ERRORS messages.  Every submitted number is compared with the reference and, at
    worst, with each mistaken pass.
    """
    shapes = [field_shape(net, layer, name) for layer, name in fields]
    largest = max((prod(shape) for shape in shapes), default=1)
    keep_dx = any(name == "dx" for _, name in fields)
    parts = [
        read_part(body),
        held(net.elements() + submitted, "the problem's and the submission's arrays"),
        *grading_passes_parts(net, passes, reruns_forward, keep_dx),
        Part(
            "comparing the largest submitted field with its expected values",
            NUMBER * SCRATCH * largest,
            SMALLER,
        ),
        answer_part(
            shapes if reveal else [],
            "json",
            "submit fewer fields, or leave reveal off",
            extra_text=FIELD_TEXT * (len(fields) + submissions + broken * BROKEN_ERRORS),
        ),
    ]
    flops = net.flops() * passes + COMPARE_FLOPS * submitted * passes
    return cost_of(parts, flops, parse_part(body, net.sent() + shapes))


#: bytes a number takes as a Python float in a list (24 and a pointer, and the lists' own)
LIST_NUMBER = 40


def exercise_cost(net: NetworkShape, loss: str, forward_passes: int = 0) -> Cost:
    """POST /v1/exercises, from the request alone: the problem drawn, solved, and both written.

    ``forward_passes`` (a request with ``layers``, any kind): the generator also runs up to
    that many forward passes as it draws, to keep every norm's input spread out
    (service.core.exercise_layers.generation_passes), and the problem is loaded by
    /v1/gradients' schema from Python lists before it is solved.
    """
    targets = (net.batch,) if net.labels else (net.batch, net.n_out)
    data = [(net.batch, net.n_in), targets]
    held_shapes = [shape for layer in net.layers for shape in (*layer.parameters, *layer.held)]
    problem = data + held_shapes
    drawn = max(prod(shape) for shape in problem)  # each draw, then its rounded copy
    if loss in ("cross_entropy", "svm"):
        drawn = max(drawn, net.n_out**2 + net.batch * net.n_out)  # one-hot rows of an identity
    fix = "ask for a smaller batch_size, or fewer and narrower layers"
    parts = [
        held(net.elements(), "the problem's arrays"),
        Part("drawing the problem's largest array", NUMBER * drawn, fix),
        *passes_parts(net),
        answer_part(problem + result_shapes(net, ("a",)), "json", fix),
    ]
    flops = net.flops()
    if forward_passes:
        widest = max(net.batch * layer.n_out for layer in net.layers)
        parts += [
            Part(
                "the generator's forward pass (a layer's input, output and its kind's step)",
                NUMBER * (SCRATCH + 2) * max(widest, net.batch * net.n_in),
                fix,
            ),
            Part(
                f"the problem as lists, loaded by /v1/gradients' schema ({net.elements():,} "
                f"numbers, about {LIST_NUMBER} bytes each, and their arrays)",
                (LIST_NUMBER + NUMBER) * net.elements(),
                fix,
            ),
        ]
        flops += forward_passes * sum(cost.forward_flops for cost in net.costs())
    return cost_of(parts, flops)


def neuron_cost(inputs: int, curve_points: int, steps: int, body: int = 0) -> Cost:
    """POST /v1/neuron: x and w, dL/dw and the stepped w, their temporaries, and the curves."""
    fix = "send fewer inputs"
    curves = [(curve_points,)] * 2 + [(steps + 1,)] * 2
    parts = [
        read_part(body),
        held(2 * inputs, "x and w"),
        # dL_dw and w_next kept; w * x, lr * dL_dw and a descent step's own pair alive beside
        Part("dL_dw, w_next and their temporaries", NUMBER * 6 * inputs, fix),
        answer_part([(inputs,), (inputs,), *curves], "json", fix + ", curve_points or steps"),
    ]
    # the terms once (w . x, dL_dw, w_next, two nudged losses), 2 per loss on the curve,
    # and a descent step's terms and loss
    flops = inputs * (11 + 2 * curve_points + 11 * steps)
    return cost_of(parts, flops, parse_part(body, [(inputs,), (inputs,)]))
