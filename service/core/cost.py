"""What a request will cost before anything runs: the bytes it holds at its peak, and its FLOPs.

The work limits count the numbers a request sends; memory goes to what it
creates.  Every layer's z, a and dz are batch x units whatever the weights, and
an answer's text takes three times its numbers' bytes: a 267 KB body asked a
worker for 835 MB.  This model prices a request from its shapes alone, so that
service.core.limits refuses it before any of that is allocated, naming the part
that is too big.

The estimate bounds what a request adds to a worker's memory at its peak, from
its body until its answer is written.  That peak is the larger of two (cost_of):
parsing the body (parse_part: the body, its numbers and lists as Python objects,
about 40 and 96 bytes each, and the arrays loaded from them), or everything
after, once the parsed lists are freed, which is the sum of:

- the body: it and its parsed form are freed before the computation starts,
  but the heap they leave is not always reused (its size, once);
- the request's own arrays (float64, 8 bytes a number: inputs, targets,
  parameters, a submission);
- every layer's kept arrays: z and a from the forward pass; dz, dW and db from
  each backward pass (the autograder holds the reference's and one mistaken pass's);
- the temporaries of the largest step: ``SCRATCH`` arrays of (batch, units), the
  most any forward or backward step (activation, loss, a mistake's rule,
  the upstream gradient) holds beside the kept arrays;
- each endpoint's extras: the gradient check's layer inputs and nudged passes,
  the updated layers, an exercise's draws;
- the answer: its text twice, plus the largest array's own pieces while it
  is written.  msgspec grows its buffer by half with realloc; a move copies it,
  and the block it leaves on the heap stays resident (service/operations/allocator.py
  keeps freed memory): a 64-layer answer of 81 MB peaked 54 MB over its
  arrays and text in RSS, where tracemalloc saw only the buffer's capacity.

Calibration, by tracemalloc in one process (it sees NumPy's, orjson's, msgspec's
and pybase64's allocations) and a gunicorn worker's peak RSS (/proc/<pid>/status
VmHWM), over every activation and loss, thin-wide and deep-narrow networks, and
the largest request of each endpoint (tests/test_memory_bound.py asserts it,
bench/memory_bound.py prints it: a fresh worker grew by 45% to 93% of the estimate):

- ``SCRATCH`` = 6: the most measured is 5.1 arrays of the step's (batch, units)
  (bce's dL/da through the sigmoid, the result included);
- JSON: orjson writes a float64 in at most 24 characters plus a comma, and 3
  more a row; while it writes one array it holds 42 bytes a number (its buffer
  over-allocates) and about 120 bytes a row (a (200000, 1) array: 162 a number);
- base64: 10.67 characters a number; one array is written twice (the base64
  bytes, then the binary form around them), plus its contiguous copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from math import prod

NUMBER = 8  # bytes of a float64
SCRATCH = 6  # arrays of a step's (batch, units) alive at once beside the kept ones
JSON_NUMBER, JSON_ROW, JSON_ARRAY = 25, 3, 32  # characters: a number, a row, keys around it
JSON_PIECE_NUMBER, JSON_PIECE_ROW = 42, 128  # bytes orjson holds writing one array
BASE64_NUMBER, BASE64_ARRAY = 11, 96  # characters: a number, the {dtype, shape, data} form
BASE64_PIECE_NUMBER = 22  # the base64 bytes and the binary form around them
ANSWER_TEXT = 4096  # an answer's keys, loss and small fields
TEXT_COPIES = 2  # the writer's buffer, and the block it was moved from as it grew
READ_COPIES = 1  # the body's heap, left by reading and parsing it
#: Parsing, measured in a fresh worker (the peak of the parse, over the RSS before the body):
PARSE_BODY = 2.5  # the body, and the heap gunicorn's read left: 1.5 to 2.3 times it measured
PARSED_NUMBER = 40  # a JSON number as a Python float (24 bytes, 32 in pymalloc) and its pointer
PARSED_LIST = 96  # a JSON list as a Python list (72 bytes, 80 in pymalloc) and its items' rounding
#: bodies up to this size are parsed by orjson, whose document tree (a copy of the body, and
#: 16 bytes a value of at least 2 characters) is alive beside the Python objects it builds
ORJSON_BODY = 2**20
ORJSON_TREE = 9
#: a JSON object as a Python dict (184 bytes with a key or two, measured 192 a dict) and a
#: JSON string as a Python str (50 bytes and its length, 60 measured for "ab")
PARSED_OBJECT = 224
PARSED_STRING = 64


def most_parse_bytes(body: int) -> int:
    """The most parsing a body of this size can hold, whatever it says: "{}," makes a dict of
    3 bytes (and orjson's tree is beside a body up to ORJSON_BODY)."""
    tree = ORJSON_TREE * body if body <= ORJSON_BODY else 0
    return int((PARSE_BODY + PARSED_OBJECT / 3) * body) + tree


Shape = tuple[int, ...]


@dataclass(frozen=True)
class Part:
    what: str  # words a client understands: "layer 0's activations (batch 200,000 x 1,000 units)"
    bytes: int
    fix: str  # what makes it smaller


@dataclass(frozen=True)
class Cost:
    bytes: int
    flops: int
    parts: tuple[Part, ...]

    @property
    def largest(self) -> Part:
        return max(self.parts, key=lambda part: part.bytes)


def cost_of(parts: Iterable[Part], flops: int, parsing: Part | None = None) -> Cost:
    """The parts' sum; or, when parsing the body peaks higher (``parsing``, see parse_part),
    that peak alone: the parsed lists are freed before anything else is computed."""
    parts = tuple(part for part in parts if part.bytes)
    total = sum(part.bytes for part in parts)
    if parsing is not None and parsing.bytes > total:
        return Cost(parsing.bytes, flops, (parsing,))
    return Cost(total, flops, parts)


# -- layers: one entry per kind ---------------------------------------------------------------


@dataclass(frozen=True)
class LayerShape:
    """What the model needs to know of a layer before it exists."""

    kind: str
    n_in: int  # numbers per sample in
    n_out: int  # numbers per sample out
    parameters: tuple[Shape, ...]  # the shapes of its parameters (and so of their gradients)
    activation: str = "identity"
    #: the arrays it was sent besides its parameters (a dropout mask): the request holds them
    held: tuple[Shape, ...] = ()
    #: what its answer carries besides gradients, by name (a mask drawn from a seed)
    state: tuple[tuple[str, Shape], ...] = ()
    #: one sample's shape in and out: (n_in,) and (n_out,) for flat data (the default),
    #: (C, H, W) for images; n_in and n_out are their sizes
    in_shape: Shape = ()
    out_shape: Shape = ()
    #: the kind's settings that size its work (a convolution's stride and pad, a pool's window)
    settings: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        if not self.in_shape:
            object.__setattr__(self, "in_shape", (self.n_in,))
        if not self.out_shape:
            object.__setattr__(self, "out_shape", (self.n_out,))

    def setting(self, name: str, default: object = None) -> object:
        return dict(self.settings).get(name, default)


@dataclass(frozen=True)
class LayerCost:
    """One layer for one batch, in float64 numbers (FLOPs apart)."""

    kept: int  # forward results kept for backward and the answer (z, a)
    gradients: int  # what one backward pass keeps (dz, dW, db)
    scratch: int  # temporaries of its largest step, beside the kept arrays
    forward_flops: int
    flops: int  # forward and backward
    what: str  # its activations' shape in words


#: (batch, a layer's shape) -> its cost.  Each kind in service.core.layers registers its
#: entry here (the package is imported with service.core): adding a kind adds its entry.
LAYER_COSTS: dict[str, Callable[[int, LayerShape], LayerCost]] = {}


#: the settings LayerShape keeps, because they size a kind's work (kinds read them in cost)
SIZING_SETTINGS = ("stride", "pad", "pool", "groups")


def dense_shape(n_in: int, n_out: int, activation: str, bias: bool = True) -> LayerShape:
    parameters = ((n_in, n_out), (n_out,)) if bias else ((n_in, n_out),)
    return LayerShape("dense", n_in, n_out, parameters, activation)


@dataclass(frozen=True)
class NetworkShape:
    batch: int
    n_in: int
    layers: tuple[LayerShape, ...]
    #: the targets are class labels: batch numbers, not batch x n_out
    labels: bool = False

    @classmethod
    def of(cls, problem) -> NetworkShape:
        """A core.Problem's shapes, whatever its layers' kinds and its targets' form."""
        layers, batch, sample = [], problem.inputs.shape[0], problem.inputs.shape[1:]
        for layer in problem.layers:
            out = layer.sample_out(sample)
            shapes = tuple(p.shape for p in layer.params.values())
            layers.append(
                LayerShape(
                    layer.kind,
                    prod(sample),
                    prod(out),
                    shapes,
                    layer.activation,
                    held=layer.held_shapes(),
                    state=tuple(layer.state_shapes(batch, prod(sample)).items()),
                    in_shape=sample,
                    out_shape=out,
                    settings=tuple(
                        (k, v) for k, v in layer.settings.items() if k in SIZING_SETTINGS
                    ),
                )
            )
            sample = out
        labels = problem.targets is not None and problem.targets.ndim == 1
        n_in = prod(problem.inputs.shape[1:])
        return cls(batch=batch, n_in=n_in, layers=tuple(layers), labels=labels)

    @classmethod
    def of_sizes(cls, batch: int, sizes: Sequence[int], activations: Sequence[str]):
        """Dense layers of the given widths: (n_in, n_1, ..., n_out)."""
        layers = zip(sizes[:-1], sizes[1:], activations)
        return cls(batch, sizes[0], tuple(dense_shape(*layer) for layer in layers))

    @property
    def n_out(self) -> int:
        return self.layers[-1].n_out if self.layers else self.n_in

    def parameters(self) -> int:
        return sum(prod(shape) for layer in self.layers for shape in layer.parameters)

    def sent(self) -> list[Shape]:
        """The shapes of the arrays the request sends: inputs, targets (or upstream),
        parameters, and what layers are sent besides (a dropout mask).  A 1-D parameter
        (a bias) is a column, as the columns convention sends it: one list a number."""
        targets = (self.batch,) if self.labels else (self.batch, self.n_out)
        first = self.layers[0].in_shape if self.layers else (self.n_in,)
        sent = [shape for layer in self.layers for shape in (*layer.parameters, *layer.held)]
        return [
            (self.batch, *first),
            targets,
            *((*shape, 1) if len(shape) == 1 else shape for shape in sent),
        ]

    def elements(self) -> int:
        """Numbers the request's arrays hold: inputs, targets (or upstream), parameters,
        and what layers are sent besides (a dropout mask)."""
        targets = self.batch if self.labels else self.batch * self.n_out
        held = sum(prod(shape) for layer in self.layers for shape in layer.held)
        return self.batch * self.n_in + targets + self.parameters() + held

    def costs(self) -> list[LayerCost]:
        return [LAYER_COSTS[layer.kind](self.batch, layer) for layer in self.layers]

    def flops(self) -> int:
        """One forward and one backward pass."""
        return sum(cost.flops for cost in self.costs())


# -- the parts every network request has ------------------------------------------------------

SMALLER = "send a smaller batch or narrower layers"


def held(numbers: int, what: str = "the request's own arrays") -> Part:
    return Part(f"{what} ({numbers:,} numbers)", NUMBER * numbers, "send a smaller batch")


def read_part(body: int) -> Part:
    """The body and its parsed form, once freed: before anything is computed, but the heap they
    leave stays resident and is not always reused (1.3 times the body beside the arrays, after
    the largest /v1/check's parse, measured).  Parsing's own peak is parse_part's."""
    return Part(
        f"the request's body, read and parsed ({body:,} bytes)",
        READ_COPIES * body,
        "send fewer numbers",
    )


def list_count(shape: Shape) -> int:
    """The JSON lists an array of ``shape`` may arrive in, whatever its layout: one for a 1-D
    array, else at most ndim - 1 lists a row of its shortest side, and the outer list."""
    if len(shape) <= 1:
        return 1
    return (len(shape) - 1) * (prod(shape) // max(min(shape), 1)) + 1


def parse_part(body: int, shapes: Iterable[Shape]) -> Part:
    """The peak of parsing the body, before the request is priced: the body and the heap its
    read left, every array's numbers and lists as Python objects (service.http.json), and the
    arrays the schema loads from them while they are alive.  Each array is counted as JSON
    lists, its most expensive form (a binary array's base64 text is 11 bytes a number)."""
    shapes = list(shapes)
    numbers = sum(prod(shape) for shape in shapes)
    lists = sum(list_count(shape) for shape in shapes)
    tree = ORJSON_TREE * body if body <= ORJSON_BODY else 0
    return Part(
        f"parsing the request's body ({body:,} bytes: {numbers:,} numbers and up to "
        f"{lists:,} lists as Python objects, then their arrays)",
        int(PARSE_BODY * body) + tree + (PARSED_NUMBER + NUMBER) * numbers + PARSED_LIST * lists,
        'send fewer numbers, or long rows (the binary form {"dtype": "float64", "shape": [...], '
        '"data": "<base64>"} parses to a few bytes a number)',
    )


def text_parse_bytes(body: int, numbers: int, lists: int, objects: int, strings: int) -> int:
    """What parsing a body of these JSON values holds at its peak, from its text alone (the
    census of service.http.prescan, before anything is parsed): as ``parse_part``, with the
    objects and strings that a request's arrays do not account for."""
    tree = ORJSON_TREE * body if body <= ORJSON_BODY else 0
    return int(
        PARSE_BODY * body
        + tree
        + (PARSED_NUMBER + NUMBER) * numbers
        + PARSED_LIST * lists
        + PARSED_OBJECT * objects
        + PARSED_STRING * strings
    )


def passes_parts(net: NetworkShape, passes: int = 1) -> list[Part]:
    """Every layer's kept arrays, and the largest step's temporaries (loss included)."""
    over = f", kept for each of {passes} backward passes" if passes > 1 else ""
    parts = [
        Part(
            f"layer {i}'s activations and gradients (z, a, dz: {cost.what}{over})",
            NUMBER * (cost.kept + passes * cost.gradients),
            SMALLER,
        )
        for i, cost in enumerate(net.costs())
    ]
    steps = [
        (cost.scratch, f"layer {i}'s step ({SCRATCH} arrays of {cost.what} and more)")
        for i, cost in enumerate(net.costs())
    ]
    # the loss and its gradient hold as many arrays of (batch, n_out), and the targets' shape
    steps.append(
        (
            (SCRATCH + 2) * net.batch * net.n_out,
            f"the loss's ({SCRATCH + 2} arrays of batch {net.batch:,} x {net.n_out:,} outputs)",
        )
    )
    scratch, whose = max(steps)
    parts.append(Part(f"the temporaries of {whose}", NUMBER * scratch, SMALLER))
    return parts


def text_bytes(shapes: Iterable[Shape], encoding: str = "json") -> int:
    """The answer text of arrays of these shapes (rows bounded by the longest side)."""
    if encoding == "base64":
        return sum(BASE64_NUMBER * prod(s) + BASE64_ARRAY for s in shapes)
    return sum(JSON_NUMBER * prod(s) + JSON_ROW * max(s, default=1) + JSON_ARRAY for s in shapes)


def answer_part(
    shapes: Sequence[Shape], encoding: str, fix: str, extra_text: int = 0, holding: str = ""
) -> Part:
    """Writing an answer that holds arrays of ``shapes``: its text twice (see the module's
    docstring), and the largest array's pieces (a contiguous copy, orjson's buffer).
    ``holding`` names arrays among them (state_text)."""
    text = ANSWER_TEXT + extra_text + text_bytes(shapes, encoding)
    if encoding == "base64":
        pieces = [(NUMBER + BASE64_PIECE_NUMBER) * prod(s) for s in shapes]
    else:
        pieces = [
            (NUMBER + JSON_PIECE_NUMBER) * prod(s) + JSON_PIECE_ROW * max(s, default=1)
            for s in shapes
        ]
    numbers = sum(prod(s) for s in shapes)
    form = "in base64" if encoding == "base64" else "as JSON text, about 25 bytes each"
    peak = TEXT_COPIES * text + max(pieces, default=0)
    return Part(f"the answer ({numbers:,} numbers {form}{holding})", peak, fix)


def result_shapes(net: NetworkShape, include: Iterable[str] = ("a",)) -> list[Shape]:
    """The arrays of a gradients answer: the included activations, every parameter's gradient."""
    include = tuple(include)
    shapes: list[Shape] = []
    for layer in net.layers:
        shapes += [
            (net.batch, *(layer.in_shape if name == "dx" else layer.out_shape)) for name in include
        ]
        shapes += list(layer.parameters)
        shapes += [shape for _, shape in layer.state]
    return shapes


def state_text(net: NetworkShape) -> str:
    """The answer's arrays that no request field can leave out (a mask drawn from a seed),
    in words, for the answer part's description: "" when there are none."""
    named = [
        f"layer {i}'s {name} ({' x '.join(f'{n:,}' for n in shape)})"
        for i, layer in enumerate(net.layers)
        for name, shape in layer.state
    ]
    return (
        f", {', '.join(named[:3])}{' and more' if len(named) > 3 else ''} among them"
        if named
        else ""
    )
