"""Merge layers: Concatenate, the element-wise merges (Add, Subtract, Multiply, Average, Maximum,
Minimum) and Dot.

They take a list of inputs (a node fed by ``a, b -> merge``). Keras 3 rules mirrored here:

- Element-wise merges broadcast the per-sample shapes (batch excluded) right-aligned, one pair
  at a time from the first input on: equal sizes stay, a 1 gives way to the other size, and a
  ``None`` on either side gives ``None`` (even against a known size). Inputs of lower rank are
  padded with leading axes after the batch.
- The batch sizes that are known must agree; the output's batch is that size, else ``None``.
- Masks: an element-wise merge's output is masked only when every input is; Concatenate's is
  masked when any input is; Dot drops masks.
- The output dtype is the layer's ``dtype`` attribute (Keras's compute dtype), whatever the
  inputs' dtypes.

Where Keras's symbolic shape check accepts what only works, or only makes sense, on one sample
at a time, these rules refuse it: Concatenate and Dot along the batch axis.

Inference (kernels), as Keras 3.15 computes it:

- Element-wise merges fold their inputs left to right: ``((x0 op x1) op x2) ...``; Average
  divides the sum by the number of inputs.
- Masks change the values of Multiply, Maximum and Minimum (Keras's ``_merge_function``; a mask
  of shape (batch, steps) covers the input's axis 1). Multiply takes a masked-out entry as 1 and,
  when every input is masked, sets the entries masked out in all inputs to 0. Maximum and Minimum
  skip a masked-out entry of the next input, and take the next input's entry where the running
  result is masked out; the running result stays masked only while every input so far is. Add,
  Subtract, Average and Concatenate ignore masks.
- Dot with ``normalize`` scales each input by ``min(1 / ||x||, 1e7)`` along its axis first
  (Keras's ``normalize`` with epsilon 1e-7).
"""

from __future__ import annotations

import math

from .base import COMMON_ATTRS, Attr, LayerDef, ShapeError, TensorType, fmt_shape, offset_grid

np = None  # NumPy, bound by base.bind_numpy when kernels are needed
KERNEL_HELPERS = (
    "_combine", "_mask_step", "_inv_norms", "offset_grid", "_split", "_normalized", "_unnormalize_grad",
)  # fmt: skip

# Arity of the element-wise merges and Concatenate: Keras 3 accepts a list of one input or more.
MANY_INPUTS = (1, None)
# Arity of Subtract and Dot.
TWO_INPUTS = (2, 2)


def _fmt_all(inputs) -> str:
    """``(None, 3) and (None, 4)``, ``(None, 3), (None, 4) and (None, 5)``."""
    shapes = [fmt_shape(t.shape) for t in inputs]
    if not shapes:
        return "none"
    if len(shapes) == 1:
        return shapes[0]
    return ", ".join(shapes[:-1]) + " and " + shapes[-1]


def _check_count(rule: str, inputs, arity) -> None:
    lo, hi = arity
    n = len(inputs)
    if n < lo or (hi is not None and n > hi):
        want = f"exactly {lo}" if lo == hi else f"at least {lo}"
        raise ShapeError(
            f"{rule} takes {want} input{'s' if (hi or lo) > 1 else ''}; got {n}: {_fmt_all(inputs)}"
        )


def _check_ranks(rule: str, inputs) -> None:
    for t in inputs:
        if t.rank < 1:
            raise ShapeError(f"{rule} needs inputs with a batch axis; got {_fmt_all(inputs)}")


def _batch(rule: str, inputs):
    """The batch size shared by the inputs: the one known size, else None."""
    sizes = {t.shape[0] for t in inputs} - {None}
    if len(sizes) > 1:
        raise ShapeError(f"{rule} needs inputs with the same batch size; got {_fmt_all(inputs)}")
    return sizes.pop() if sizes else None


def _out_dtype(attrs) -> str:
    return attrs.get("dtype") or "float32"


# ----------------------------------------------------------------------------- element-wise


def broadcast(rule: str, inputs) -> tuple:
    """The element-wise merge's output shape (batch included), by Keras 3's pairwise rule."""
    out = tuple(inputs[0].shape[1:])
    for t in inputs[1:]:
        a, b = out, tuple(t.shape[1:])
        if len(a) < len(b):
            a, b = b, a
        if not b:
            out = a
            continue
        head, tail = list(a[: len(a) - len(b)]), a[len(a) - len(b) :]
        for i, j in zip(tail, b):
            if i is None or j is None:
                head.append(None)
            elif i == 1:
                head.append(j)
            elif j == 1 or i == j:
                head.append(i)
            else:
                raise ShapeError(
                    f"{rule} needs shapes that broadcast (right-aligned, batch excluded: equal sizes, "
                    f"or 1); got {_fmt_all(inputs)}"
                )
        out = tuple(head)
    return (_batch(rule, inputs), *out)


def _elementwise_infer(name: str, arity):
    def infer(attrs, inputs, ctx):
        _check_count(name, inputs, arity)
        _check_ranks(name, inputs)
        shape = broadcast(name, inputs)
        masked = all(t.masked for t in inputs)
        return [TensorType(shape, _out_dtype(attrs), masked)]

    infer.__name__ = f"_{name.lower()}_infer"
    return infer


# Op codes of the element-wise kernels.
OP_COPY, OP_ADD, OP_SUB, OP_MUL, OP_MAX, OP_MIN = 0, 1, 2, 3, 4, 5
_OPS = {"Add": OP_ADD, "Subtract": OP_SUB, "Multiply": OP_MUL, "Average": OP_ADD, "Maximum": OP_MAX,
        "Minimum": OP_MIN}  # fmt: skip
_MASKED_OPS = ("Multiply", "Maximum", "Minimum")  # the merges whose values depend on masks


def _combine(a, b, op):
    if op == 1:
        return a + b
    if op == 2:
        return a - b
    if op == 3:
        return a * b
    if op == 4:
        return max(a, b)
    if op == 5:
        return min(a, b)
    return a


def merge_binary(a, b, y, op, out_shape, a_strides, b_strides, a_full, b_full):
    """``y = a op b`` per row of the 2-D ``a``, ``b``, ``y`` (rows, values per sample), with
    broadcasting: output axis ``i`` has size ``out_shape[i]`` and steps through ``a`` and ``b``
    by ``a_strides[i]`` and ``b_strides[i]`` values (0 on a broadcast axis). ``a_full`` and
    ``b_full`` say that an operand has the output's layout (a flat loop then reads it). ``y``
    may be ``a``. ``OP_COPY`` writes ``a`` broadcast (``b`` unused)."""
    rows = y.shape[0]
    size = y.shape[1]
    if a_full and b_full:
        for r in range(rows):
            for i in range(size):
                y[r, i] = _combine(a[r, i], b[r, i], op)
        return
    nd = len(out_shape)
    last = out_shape[nd - 1]
    sa = a_strides[nd - 1]
    sb = b_strides[nd - 1]
    idx = np.zeros(nd, np.int64)
    for r in range(rows):
        for d in range(nd):
            idx[d] = 0
        ia = 0
        ib = 0
        o = 0
        while o < size:
            for j in range(last):
                y[r, o + j] = _combine(a[r, ia + j * sa], b[r, ib + j * sb], op)
            o += last
            d = nd - 2
            while d >= 0:
                idx[d] += 1
                ia += a_strides[d]
                ib += b_strides[d]
                if idx[d] < out_shape[d]:
                    break
                ia -= a_strides[d] * out_shape[d]
                ib -= b_strides[d] * out_shape[d]
                idx[d] = 0
                d -= 1


def merge_scale(y, factor):
    """``y /= factor`` (Average: Keras divides the sum by the number of inputs)."""
    rows, size = y.shape
    for r in range(rows):
        for i in range(size):
            y[r, i] = y[r, i] / factor


def _mask_step(m, r, t, steps):
    """The mask entry of step ``t``: a mask of one step covers every step."""
    return m[r, t] if m.shape[1] == steps else m[r, 0]


def masked_extremum_step(out, om, x, m, op, out_masked, x_masked):
    """One step of Keras's masked Maximum/Minimum over 3-D (rows, steps, rest) arrays:
    a masked-out entry of ``x`` is replaced by the running output, a masked-out entry of the
    running output by ``x``, then ``out = op(out, x)``. ``om`` (rows, steps) is the running
    output's mask; it becomes ``om or m`` when both are given (the caller then keeps it)."""
    rows, steps, rest = out.shape
    for r in range(rows):
        for t in range(steps):
            ov = (not out_masked) or om[r, t] != 0
            xv = (not x_masked) or _mask_step(m, r, t, steps) != 0
            for j in range(rest):
                a = out[r, t, j]
                b = x[r, t, j]
                if not xv:
                    b = a
                if not ov:
                    a = b
                out[r, t, j] = _combine(a, b, op)
            if out_masked and x_masked:
                om[r, t] = 1.0 if (ov or xv) else 0.0


def masked_multiply_step(out, x, m, first, x_masked):
    """One step of Keras's masked Multiply over 3-D (rows, steps, rest) arrays: a masked-out
    entry of ``x`` (if ``x_masked``) counts as 1. ``first`` writes ``out`` rather than
    multiplying into it."""
    rows, steps, rest = out.shape
    for r in range(rows):
        for t in range(steps):
            valid = (not x_masked) or _mask_step(m, r, t, steps) != 0
            for j in range(rest):
                v = x[r, t, j] if valid else 1.0
                out[r, t, j] = v if first else out[r, t, j] * v


def mask_copy(om, m):
    """``om = m`` for a (rows, steps) mask, a one-step mask covering every step."""
    rows, steps = om.shape
    for r in range(rows):
        for t in range(steps):
            om[r, t] = _mask_step(m, r, t, steps)


def mask_or_into(om, m):
    """``om = om or m`` for (rows, steps) masks (1.0 valid, 0.0 masked)."""
    rows, steps = om.shape
    for r in range(rows):
        for t in range(steps):
            if _mask_step(m, r, t, steps) != 0:
                om[r, t] = 1.0


def zero_masked(out, om):
    """``out = where(om, out, 0)`` over a 3-D (rows, steps, rest) ``out``."""
    rows, steps, rest = out.shape
    for r in range(rows):
        for t in range(steps):
            if om[r, t] == 0:
                for j in range(rest):
                    out[r, t, j] = 0.0


def _row_major_strides(shape) -> tuple:
    out = []
    acc = 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return tuple(reversed(out))


def _broadcast_strides(xs: tuple, ys: tuple) -> tuple:
    """Per output axis, the stride through an input of per-sample shape ``xs`` (0 where it is
    broadcast); a lower-rank input gains leading axes."""
    padded = (1,) * (len(ys) - len(xs)) + tuple(xs)
    strides = _row_major_strides(padded)
    return tuple(0 if (p == 1 and o != 1) else st for p, o, st in zip(padded, ys, strides))


def _elementwise_emit(name: str):
    def emit(e):
        (ys,) = e.y_shapes
        ys = tuple(ys) or (1,)
        size = math.prod(ys)
        rows = e.rows(output=True)
        full = _row_major_strides(ys)
        y2 = e.flat2(e.y[0], (size,), rows)

        def operand(i):
            xs = tuple(e.x_shapes[i])
            x2 = e.flat2(e.x[i], (math.prod(xs),), e.rows(i))
            st = _broadcast_strides(xs, ys)
            return x2, st, st == full

        masked = name in _MASKED_OPS and any(m is not None for m in e.m)
        if masked:
            return _masked_emit(e, name, ys, size, rows, y2, operand)
        op = _OPS[name]
        x0, s0, f0 = operand(0)
        if len(e.x) == 1:
            lines = [e.call(merge_binary, x0, x0, y2, OP_COPY, ys, s0, s0, f0, f0)]
        else:
            x1, s1, f1 = operand(1)
            lines = [e.call(merge_binary, x0, x1, y2, op, ys, s0, s1, f0, f1)]
            for i in range(2, len(e.x)):
                xi, si, fi = operand(i)
                lines.append(e.call(merge_binary, y2, xi, y2, op, ys, full, si, True, fi))
        if name == "Average":
            lines.append(e.call(merge_scale, y2, float(len(e.x))))
        return lines

    emit.__name__ = f"_{name.lower()}_emit"
    return emit


def _masked_emit(e, name, ys, size, rows, y2, operand):
    """Multiply, Maximum and Minimum with masked inputs: broadcast each input to the output's
    shape, then fold them in with Keras's mask rules over (rows, steps, rest) views."""
    steps = ys[0] if len(ys) > 1 else 1
    rest = size // steps
    y3 = f"{e.y[0]}.reshape(({rows}, {steps}, {rest}))"
    lines = []
    om = e.tmp(f"({rows}, {steps})")  # the running output mask (also a placeholder mask)

    def full_operand(i):
        xi, si, fi = operand(i)
        if fi:
            return f"{e.x[i]}.reshape(({rows}, {steps}, {rest}))"
        t = e.tmp(f"({rows}, {size})")
        lines.append(e.call(merge_binary, xi, xi, t, OP_COPY, ys, si, si, False, False))
        return f"{t}.reshape(({rows}, {steps}, {rest}))"

    def mask2(i):
        return om if e.m[i] is None else f"{e.m[i]}.reshape(({rows}, -1))"

    if name == "Multiply":
        for i in range(len(e.x)):
            xi = full_operand(i)
            lines.append(e.call(masked_multiply_step, y3, xi, mask2(i), i == 0, e.m[i] is not None))
        if all(m is not None for m in e.m):
            lines.append(e.call(mask_copy, om, mask2(0)))
            for i in range(1, len(e.x)):
                lines.append(e.call(mask_or_into, om, mask2(i)))
            lines.append(e.call(zero_masked, y3, om))
        return lines
    op = _OPS[name]
    x0, s0, f0 = operand(0)
    lines.append(e.call(merge_binary, x0, x0, y2, OP_COPY, ys, s0, s0, f0, f0))
    out_masked = e.m[0] is not None
    if out_masked:
        lines.append(e.call(mask_copy, om, mask2(0)))
    for i in range(1, len(e.x)):
        x_masked = e.m[i] is not None
        xi = full_operand(i)
        lines.append(e.call(masked_extremum_step, y3, om, xi, mask2(i), op, out_masked, x_masked))
        out_masked = out_masked and x_masked
    return lines


# ----------------------------------------------------------------------------- element-wise backward
#
# The gradient of an input is the output's gradient (times the other factors for Multiply)
# summed over the axes along which that input was broadcast. Maximum and Minimum fold left,
# ``max(max(x0, x1), x2)``, and split the gradient of each pairwise step as PyTorch's autograd
# does for ``torch.maximum``: all to the larger, half to each on a tie. With masks, the backward
# pass replays Keras's masked fold (``_masked_emit``) and sends each gradient where autograd
# sends it through its ``where``s: a masked-out entry of an input gets none.


def merge_grad(dy, dx, scale, out_shape, x_strides, x_full):
    """``dx += scale * dy`` summed over the axes ``dx``'s operand was broadcast along: 2-D
    (rows, values per sample) arrays, strides as for ``merge_binary``."""
    rows, size = dy.shape
    if x_full:
        for r in range(rows):
            for i in range(size):
                dx[r, i] += scale * dy[r, i]
        return
    offs = offset_grid(out_shape, x_strides)
    for r in range(rows):
        for i in range(size):
            dx[r, offs[i]] += scale * dy[r, i]


def _split(a, b, g, op):
    """The gradient ``g`` of ``max(a, b)`` (op 4) or ``min(a, b)`` (op 5) split between ``a``
    and ``b`` as PyTorch's autograd does: all to the winner, half each on a tie."""
    if a == b:
        return 0.5 * g, 0.5 * g
    if (a > b) == (op == 4):
        return g, 0.0
    return 0.0, g


def extremum_grad_step(prev, x, g, dx, op, out_shape, x_strides, x_full, need_dx):
    """One step of the backward pass of the fold ``out = op(prev, x)``: ``g`` (rows, size) holds
    the gradient of ``out`` and becomes that of ``prev`` (full size); ``x``'s share is added
    into ``dx`` (broadcast axes summed) if ``need_dx``."""
    rows, size = g.shape
    offs = offset_grid(out_shape, x_strides)
    for r in range(rows):
        for i in range(size):
            ix = i if x_full else offs[i]
            ga, gb = _split(prev[r, i], x[r, ix], g[r, i], op)
            g[r, i] = ga
            if need_dx:
                dx[r, ix] += gb


def masked_extremum_grad_step(prev, om, x, m, g, gx, op, out_masked, x_masked):
    """The backward pass of ``masked_extremum_step`` over 3-D (rows, steps, rest) arrays, given
    the running output ``prev`` and mask ``om`` before the step: ``g`` holds the gradient of the
    step's output and becomes that of ``prev``; ``gx`` receives ``x``'s (full size)."""
    rows, steps, rest = g.shape
    for r in range(rows):
        for t in range(steps):
            ov = (not out_masked) or om[r, t] != 0
            xv = (not x_masked) or _mask_step(m, r, t, steps) != 0
            for j in range(rest):
                a = prev[r, t, j]
                b = x[r, t, j] if xv else a
                if not ov:
                    a = b
                ga, gb = _split(a, b, g[r, t, j], op)
                # b comes from x if xv, else from prev; a from prev if ov, else from b's source
                to_x = (gb if xv else 0.0) + (ga if (not ov and xv) else 0.0)
                g[r, t, j] = ga + gb - to_x
                gx[r, t, j] = to_x


def mask_fill(t, m, value):
    """``t = where(m, t, value)`` over a 3-D (rows, steps, rest) ``t``, ``m`` (rows, steps)."""
    rows, steps, rest = t.shape
    for r in range(rows):
        for s in range(steps):
            if _mask_step(m, r, s, steps) == 0:
                for j in range(rest):
                    t[r, s, j] = value


def _elementwise_backward(name: str):
    def backward(e):
        if all(d is None for d in e.dx):
            return []
        (ys,) = e.y_shapes
        ys = tuple(ys) or (1,)
        size = math.prod(ys)
        rows = e.rows(output=True)
        full = _row_major_strides(ys)
        dy2 = e.flat2(e.dy[0], (size,), rows)

        def operand(i):
            xs = tuple(e.x_shapes[i])
            x2 = e.flat2(e.x[i], (math.prod(xs),), e.rows(i))
            st = _broadcast_strides(xs, ys)
            return x2, st, st == full

        def grad(i):
            xs = tuple(e.x_shapes[i])
            return e.flat2(e.dx[i], (math.prod(xs),), e.rows(i))

        n = len(e.x)
        if name in _MASKED_OPS and any(m is not None for m in e.m):
            return _masked_backward(e, name, ys, size, rows, dy2, operand, grad, full)
        lines = []
        if name in ("Add", "Subtract", "Average") or n == 1:
            for i in range(n):
                if e.dx[i] is None:
                    continue
                scale = 1.0 / n if name == "Average" else (-1.0 if (name == "Subtract" and i == 1) else 1.0)
                _, st, f = operand(i)
                lines.append(e.call(merge_grad, dy2, grad(i), scale, ys, st, f))
            return lines
        if name == "Multiply":
            for i in range(n):
                if e.dx[i] is None:
                    continue
                t = e.tmp(f"({rows}, {size})")
                lines.append(e.call(merge_binary, dy2, dy2, t, OP_COPY, ys, full, full, True, True))
                for j in range(n):
                    if j != i:
                        xj, sj, fj = operand(j)
                        lines.append(e.call(merge_binary, t, xj, t, OP_MUL, ys, full, sj, True, fj))
                _, si, fi = operand(i)
                lines.append(e.call(merge_grad, t, grad(i), 1.0, ys, si, fi))
            return lines
        # Maximum, Minimum: replay the fold, then walk it back.
        op = _OPS[name]
        runs = []
        x0, s0, f0 = operand(0)
        prev = e.tmp(f"({rows}, {size})")
        lines.append(e.call(merge_binary, x0, x0, prev, OP_COPY, ys, s0, s0, f0, f0))
        runs.append(prev)
        for j in range(1, n - 1):
            xj, sj, fj = operand(j)
            t = e.tmp(f"({rows}, {size})")
            lines.append(e.call(merge_binary, prev, xj, t, op, ys, full, sj, True, fj))
            runs.append(t)
            prev = t
        g = e.tmp(f"({rows}, {size})")
        lines.append(e.call(merge_binary, dy2, dy2, g, OP_COPY, ys, full, full, True, True))
        for j in range(n - 1, 0, -1):
            xj, sj, fj = operand(j)
            dxj = grad(j) if e.dx[j] is not None else g  # g: unused placeholder
            lines.append(
                e.call(extremum_grad_step, runs[j - 1], xj, g, dxj, op, ys, sj, fj, e.dx[j] is not None)
            )
        if e.dx[0] is not None:
            lines.append(e.call(merge_grad, g, grad(0), 1.0, ys, s0, f0))
        return lines

    backward.__name__ = f"_{name.lower()}_backward"
    return backward


def _masked_backward(e, name, ys, size, rows, dy2, operand, grad, full):
    """Backward of ``_masked_emit``: Multiply, Maximum and Minimum with masked inputs."""
    steps = ys[0] if len(ys) > 1 else 1
    rest = size // steps
    lines = []
    n = len(e.x)

    def v3(var):
        return f"{var}.reshape(({rows}, {steps}, {rest}))"

    def full_copy(i):
        xi, si, fi = operand(i)
        t = e.tmp(f"({rows}, {size})")
        lines.append(e.call(merge_binary, xi, xi, t, OP_COPY, ys, si, si, fi, fi))
        return t

    def mask2(i, placeholder):
        return placeholder if e.m[i] is None else f"{e.m[i]}.reshape(({rows}, -1))"

    if name == "Multiply":
        om = e.tmp(f"({rows}, {steps})")
        xt = []
        for i in range(n):
            t = full_copy(i)
            if e.m[i] is not None:
                lines.append(e.call(mask_fill, v3(t), mask2(i, om), 1.0))
            xt.append(t)
        g = e.tmp(f"({rows}, {size})")
        lines.append(e.call(merge_binary, dy2, dy2, g, OP_COPY, ys, full, full, True, True))
        if all(m is not None for m in e.m):
            lines.append(e.call(mask_copy, om, mask2(0, om)))
            for i in range(1, n):
                lines.append(e.call(mask_or_into, om, mask2(i, om)))
            lines.append(e.call(zero_masked, v3(g), om))
        for i in range(n):
            if e.dx[i] is None:
                continue
            t = e.tmp(f"({rows}, {size})")
            lines.append(e.call(merge_binary, g, g, t, OP_COPY, ys, full, full, True, True))
            for j in range(n):
                if j != i:
                    lines.append(e.call(merge_binary, t, xt[j], t, OP_MUL, ys, full, full, True, True))
            if e.m[i] is not None:
                lines.append(e.call(mask_fill, v3(t), mask2(i, om), 0.0))
            _, si, fi = operand(i)
            lines.append(e.call(merge_grad, t, grad(i), 1.0, ys, si, fi))
        return lines
    op = _OPS[name]
    # Replay the forward fold, keeping each running output and mask.
    prev = full_copy(0)
    om = e.tmp(f"({rows}, {steps})")
    out_masked = e.m[0] is not None
    if out_masked:
        lines.append(e.call(mask_copy, om, mask2(0, om)))
    runs = [(prev, om, out_masked)]
    xt = [prev]
    for j in range(1, n):
        x_masked = e.m[j] is not None
        xj = full_copy(j)
        xt.append(xj)
        if j == n - 1:
            break
        t = e.tmp(f"({rows}, {size})")
        lines.append(e.call(merge_binary, prev, prev, t, OP_COPY, ys, full, full, True, True))
        om2 = e.tmp(f"({rows}, {steps})")
        lines.append(f"{om2}[:] = {om}")
        lines.append(
            e.call(masked_extremum_step, v3(t), om2, v3(xj), mask2(j, om2), op, out_masked, x_masked)
        )
        out_masked = out_masked and x_masked
        prev, om = t, om2
        runs.append((prev, om, out_masked))
    g = e.tmp(f"({rows}, {size})")
    lines.append(e.call(merge_binary, dy2, dy2, g, OP_COPY, ys, full, full, True, True))
    gx = e.tmp(f"({rows}, {size})")
    for j in range(n - 1, 0, -1):
        prev, om, out_masked = runs[j - 1]
        lines.append(e.call(masked_extremum_grad_step, v3(prev), om, v3(xt[j]), mask2(j, om), v3(g), v3(gx), op,
                            out_masked, e.m[j] is not None))  # fmt: skip
        if e.dx[j] is not None:
            _, sj, fj = operand(j)
            lines.append(e.call(merge_grad, gx, grad(j), 1.0, ys, sj, fj))
    if e.dx[0] is not None:
        _, s0, f0 = operand(0)
        lines.append(e.call(merge_grad, g, grad(0), 1.0, ys, s0, f0))
    return lines


def _elementwise_reference(name: str):
    def reference(attrs, inputs, params, masks=None):
        ys = broadcast(name, [TensorType((None, *x.shape[1:])) for x in inputs])[1:]
        n = inputs[0].shape[0]
        xs = [np.broadcast_to(x.reshape((n,) + (1,) * (len(ys) - x.ndim + 1) + x.shape[1:]), (n, *ys))
              for x in inputs]  # fmt: skip
        masks = list(masks) if masks else [None] * len(xs)
        if name in _MASKED_OPS and any(m is not None for m in masks):
            return [_masked_reference(name, xs, masks)]
        out = xs[0]
        for x in xs[1:]:
            out = {"Add": np.add, "Average": np.add, "Subtract": np.subtract, "Multiply": np.multiply,
                   "Maximum": np.maximum, "Minimum": np.minimum}[name](out, x)  # fmt: skip
        if name == "Average":
            out = out / len(xs)
        return [np.array(out, dtype=np.float64)]

    reference.__name__ = f"_{name.lower()}_reference"
    return reference


def _masked_reference(name, xs, masks):
    """Keras 3.15's masked Multiply / Maximum / Minimum, written over whole arrays."""

    def full(m, x):  # (batch, steps) mask -> the input's shape
        if m is None:
            return None
        m = np.asarray(m) != 0
        return np.broadcast_to(m.reshape(m.shape + (1,) * (x.ndim - m.ndim)), x.shape)

    ms = [full(m, x) for m, x in zip(masks, xs)]
    if name == "Multiply":
        out = None
        for x, m in zip(xs, ms):
            x = x if m is None else np.where(m, x, 1.0)
            out = x if out is None else out * x
        if all(m is not None for m in ms):
            out = np.where(np.logical_or.reduce(ms), out, 0.0)
        return out
    fn = np.maximum if name == "Maximum" else np.minimum
    out, om = xs[0], ms[0]
    for x, m in zip(xs[1:], ms[1:]):
        if m is not None:
            x = np.where(m, x, out)
        if om is not None:
            out = np.where(om, out, x)
        om = np.logical_or(om, m) if (m is not None and om is not None) else None
        out = fn(out, x)
    return out


def _elementwise(name: str, doc: str, arity=MANY_INPUTS) -> LayerDef:
    return LayerDef(
        name=name,
        attrs=(*COMMON_ATTRS,),
        infer=_elementwise_infer(name, arity),
        arity=arity,
        doc=doc,
        emit=_elementwise_emit(name),
        reference=_elementwise_reference(name),
        emit_backward=_elementwise_backward(name),
        uses_mask=name in _MASKED_OPS,
    )


_BROADCAST_DOC = (
    " Per-sample shapes broadcast right-aligned (a size 1 stretches to the other size; a lower "
    "rank input gains leading axes). The output is masked only when every input is."
)

ADD = _elementwise("Add", "Sums its inputs element by element." + _BROADCAST_DOC)
SUBTRACT = _elementwise(
    "Subtract",
    "Takes exactly two inputs and returns the first minus the second, element by element." + _BROADCAST_DOC,
    TWO_INPUTS,
)
MULTIPLY = _elementwise("Multiply", "Multiplies its inputs element by element." + _BROADCAST_DOC)
AVERAGE = _elementwise("Average", "The element-wise mean of its inputs." + _BROADCAST_DOC)
MAXIMUM = _elementwise("Maximum", "The element-wise maximum of its inputs." + _BROADCAST_DOC)
MINIMUM = _elementwise("Minimum", "The element-wise minimum of its inputs." + _BROADCAST_DOC)

# ----------------------------------------------------------------------------- Concatenate


def _concat_infer(attrs, inputs, ctx):
    axis = attrs["axis"]
    rule = f"Concatenate(axis={axis})"
    _check_count(rule, inputs, MANY_INPUTS)
    _check_ranks(rule, inputs)
    rank = inputs[0].rank
    mismatch = ShapeError(f"{rule} needs equal shapes except on axis {axis}; got {_fmt_all(inputs)}")
    if any(t.rank != rank for t in inputs):
        raise mismatch
    if not -rank <= axis < rank:
        raise ShapeError(
            f"{rule}: axis {axis} is out of range for inputs of rank {rank}; got {_fmt_all(inputs)}"
        )
    ax = axis % rank
    if ax == 0:
        raise ShapeError(f"{rule} cannot join along the batch axis; got {_fmt_all(inputs)}")
    for d in range(rank):
        if d == ax:
            continue
        sizes = {t.shape[d] for t in inputs} - {None}
        if len(sizes) > 1:
            raise mismatch
    # Keras's rule: every axis but the joined one is the first input's (None stays None).
    out = list(inputs[0].shape)
    sizes = [t.shape[ax] for t in inputs]
    out[ax] = None if None in sizes else sum(sizes)
    out[0] = _batch(rule, inputs)
    return [TensorType(tuple(out), _out_dtype(attrs), any(t.masked for t in inputs))]


def concat_part(x, y, offset):
    """``y[:, offset:offset + width] = x`` for 2-D ``x`` (rows, width) and ``y`` (rows, total)."""
    rows, width = x.shape
    o = np.uint64(offset)  # unsigned: no wraparound check per element (recurrent._add_rows)
    for r in range(rows):
        for j in range(np.uint64(width)):
            y[r, o + j] = x[r, j]


def _concat_emit(e):
    (ys,) = e.y_shapes
    ax = e.attrs["axis"] % (len(ys) + 1) - 1  # the per-sample axis
    outer = math.prod(ys[:ax])
    inner = math.prod(ys[ax + 1 :])
    rows = e.rows(output=True)
    y2 = e.flat2(e.y[0], (outer, ys[ax] * inner), rows)
    lines = []
    offset = 0
    for x, xs in zip(e.x, e.x_shapes):
        width = xs[ax] * inner
        lines.append(e.call(concat_part, e.flat2(x, (outer, width), rows), y2, offset))
        offset += width
    return lines


def concat_part_backward(dy, dx, offset):
    """``dx += dy[:, offset:offset + width]`` for 2-D ``dx`` (rows, width), ``dy`` (rows, total)."""
    rows, width = dx.shape
    o = np.uint64(offset)
    for r in range(rows):
        for j in range(np.uint64(width)):
            dx[r, j] += dy[r, o + j]


def _concat_backward(e):
    (ys,) = e.y_shapes
    ax = e.attrs["axis"] % (len(ys) + 1) - 1
    outer = math.prod(ys[:ax])
    inner = math.prod(ys[ax + 1 :])
    rows = e.rows(output=True)
    dy2 = e.flat2(e.dy[0], (outer, ys[ax] * inner), rows)
    lines = []
    offset = 0
    for dx, xs in zip(e.dx, e.x_shapes):
        width = xs[ax] * inner
        if dx is not None:
            lines.append(e.call(concat_part_backward, dy2, e.flat2(dx, (outer, width), rows), offset))
        offset += width
    return lines


def _concat_reference(attrs, inputs, params, masks=None):
    return [np.concatenate(inputs, axis=attrs["axis"]).astype(np.float64)]


CONCATENATE = LayerDef(
    name="Concatenate",
    attrs=(
        Attr("axis", "int", -1, "The axis to join along (negative counts from the end; not the batch axis)."),
        *COMMON_ATTRS,
    ),
    infer=_concat_infer,
    emit=_concat_emit,
    reference=_concat_reference,
    emit_backward=_concat_backward,
    arity=MANY_INPUTS,
    positional=("axis",),
    doc="Joins its inputs end to end along one axis. All inputs have the same rank and the same "
    "sizes on every other axis; the output's size on the axis is the sum of theirs. The output "
    "is masked when any input is.",
)

# ----------------------------------------------------------------------------- Dot


def _dot_axes(attrs, inputs) -> tuple[int, int]:
    """The two contracted axes, non-negative, checked against the inputs."""
    raw = attrs["axes"]
    axes = [raw, raw] if isinstance(raw, int) else list(raw)
    rule = f"Dot(axes={raw})"
    if len(axes) != 2:
        raise ShapeError(f"{rule}: axes must be one int or a list of two ints")
    out = []
    for a, t in zip(axes, inputs):
        if not -t.rank <= a < t.rank:
            raise ShapeError(
                f"{rule}: axis {a} is out of range for an input of rank {t.rank}; got {_fmt_all(inputs)}"
            )
        a %= t.rank
        if a == 0:
            raise ShapeError(f"{rule} cannot contract the batch axis; got {_fmt_all(inputs)}")
        out.append(a)
    return out[0], out[1]


def _dot_infer(attrs, inputs, ctx):
    rule = f"Dot(axes={attrs['axes']})"
    _check_count(rule, inputs, TWO_INPUTS)
    x, y = inputs
    if x.rank < 2 or y.rank < 2:
        raise ShapeError(f"{rule} needs inputs of rank 2 or more (batch included); got {_fmt_all(inputs)}")
    a, b = _dot_axes(attrs, inputs)
    # Keras compares the two sizes as they are: a None only matches a None.
    if x.shape[a] != y.shape[b]:
        raise ShapeError(
            f"{rule} needs equal sizes on the contracted axes; got {fmt_shape(x.shape)} (axis {a}: "
            f"{x.shape[a]}) and {fmt_shape(y.shape)} (axis {b}: {y.shape[b]})"
        )
    batch = _batch(rule, inputs)
    shape = [batch] + [d for i, d in enumerate(x.shape) if i not in (0, a)]
    shape += [d for i, d in enumerate(y.shape) if i not in (0, b)]
    if len(shape) == 1:
        shape.append(1)
    return [TensorType(tuple(shape), _out_dtype(attrs), False)]


DOT_EPSILON = 1e-7  # Keras's backend.epsilon(), the floor of the norms when normalize is set
SMALL_DOT = 4096  # multiply-adds per sample below which loops beat a BLAS call per sample


def _inv_norms(x, r, pre, k, post, inv):
    """``inv[p, q] = min(1 / ||x[r, p, :, q]||, 1 / DOT_EPSILON)``, x seen as (pre, k, post)."""
    for p in range(pre):
        for q in range(post):
            ss = 0.0
            for i in range(k):
                v = x[r, (p * k + i) * post + q]
                ss += v * v
            inv[p, q] = 1.0 / DOT_EPSILON if ss <= DOT_EPSILON * DOT_EPSILON else 1.0 / math.sqrt(ss)


def dot_forward(x, y, out, pre_x, k, post_x, pre_y, post_y, normalize):
    """Per row, ``out[px, qx, py, qy] = sum_i x[px, i, qx] * y[py, i, qy]``, where ``x`` and
    ``y`` are 2-D (rows, values per sample) seen per sample as (pre, k, post) around their
    contracted axis; with ``normalize``, each input is first scaled to unit L2 norm along it."""
    rows = x.shape[0]
    inv_x = np.ones((pre_x, post_x), np.float64)
    inv_y = np.ones((pre_y, post_y), np.float64)
    m = pre_x * post_x
    n = pre_y * post_y
    blas = post_x == 1 and (pre_y == 1 or post_y == 1) and m * n * k > SMALL_DOT
    for r in range(rows):
        if normalize:
            _inv_norms(x, r, pre_x, k, post_x, inv_x)
            _inv_norms(y, r, pre_y, k, post_y, inv_y)
        if blas:
            prod = out[r].reshape((m, n))
            if pre_y == 1:
                np.dot(x[r].reshape((m, k)), y[r].reshape((k, n)), prod)
            else:
                np.dot(x[r].reshape((m, k)), y[r].reshape((n, k)).T, prod)
            if normalize:
                iy = inv_y.reshape(n)
                for a in range(m):
                    for b in range(n):
                        prod[a, b] = prod[a, b] * (inv_x[a, 0] * iy[b])
            continue
        o = 0
        for px in range(pre_x):
            for qx in range(post_x):
                for py in range(pre_y):
                    for qy in range(post_y):
                        acc = 0.0
                        bx = px * k * post_x + qx
                        by = py * k * post_y + qy
                        for i in range(k):
                            acc += x[r, bx + i * post_x] * y[r, by + i * post_y]
                        if normalize:
                            acc *= inv_x[px, qx] * inv_y[py, qy]
                        out[r, o] = acc
                        o += 1


def _dot_emit(e):
    xs, ys_ = (tuple(s) for s in e.x_shapes)
    (zs,) = e.y_shapes
    a, b = _dot_axes(e.attrs, [TensorType((None, *xs)), TensorType((None, *ys_))])
    a, b = a - 1, b - 1  # per-sample axes
    rows = e.rows()
    x2 = e.flat2(e.x[0], (math.prod(xs),), rows)
    y2 = e.flat2(e.x[1], (math.prod(ys_),), e.rows(1))
    z2 = e.flat2(e.y[0], (math.prod(zs),), e.rows(output=True))
    return [
        e.call(dot_forward, x2, y2, z2, math.prod(xs[:a]), xs[a], math.prod(xs[a + 1 :]),
               math.prod(ys_[:b]), math.prod(ys_[b + 1 :]), bool(e.attrs["normalize"]))
    ]  # fmt: skip


def _normalized(x, r, pre, k, post, inv, out):
    """``out`` (pre, k, post) = sample ``r`` of ``x`` scaled by ``inv`` (pre, post)."""
    for p in range(pre):
        for i in range(k):
            for q in range(post):
                out[p, i, q] = x[r, (p * k + i) * post + q] * inv[p, q]


def _unnormalize_grad(x, r, pre, k, post, inv, gh, dx):
    """Add into ``dx[r]`` the gradient through ``xh = x * min(1 / ||x||, 1e7)`` (along k) of
    ``gh``, the gradient of ``xh``: ``inv * (gh - xh * sum(gh * xh))`` where the norm is
    above the floor, ``inv * gh`` where it was capped."""
    for p in range(pre):
        for q in range(post):
            iv = inv[p, q]
            capped = iv >= 1.0 / DOT_EPSILON
            s = 0.0
            if not capped:
                for i in range(k):
                    s += gh[p, i, q] * x[r, (p * k + i) * post + q]
            for i in range(k):
                o = (p * k + i) * post + q
                v = iv * gh[p, i, q]
                if not capped:
                    v -= iv * iv * iv * x[r, o] * s
                dx[r, o] += v


def dot_backward(x, y, dout, dx, dy, pre_x, k, post_x, pre_y, post_y, normalize, need_dx, need_dy):
    """The gradient of ``dot_forward`` (same layout): adds into ``dx`` and ``dy`` (2-D, rows by
    values per sample; pass any 2-D array for one not needed)."""
    rows = x.shape[0]
    inv_x = np.ones((pre_x, post_x), np.float64)
    inv_y = np.ones((pre_y, post_y), np.float64)
    xh = np.empty((pre_x, k, post_x), np.float64)
    yh = np.empty((pre_y, k, post_y), np.float64)
    gx = np.empty((pre_x, k, post_x), np.float64)
    gy = np.empty((pre_y, k, post_y), np.float64)
    m = pre_x * post_x
    n = pre_y * post_y
    for r in range(rows):
        if normalize:
            _inv_norms(x, r, pre_x, k, post_x, inv_x)
            _inv_norms(y, r, pre_y, k, post_y, inv_y)
        _normalized(x, r, pre_x, k, post_x, inv_x, xh)
        _normalized(y, r, pre_y, k, post_y, inv_y, yh)
        gx[:] = 0.0
        gy[:] = 0.0
        if post_x == 1 and post_y == 1 and m * n * k > SMALL_DOT:
            d = dout[r].reshape((m, n)).astype(np.float64)
            np.dot(d, yh.reshape((n, k)), gx.reshape((m, k)))
            np.dot(d.T, xh.reshape((m, k)), gy.reshape((n, k)))
        else:
            o = 0
            for px in range(pre_x):
                for qx in range(post_x):
                    for py in range(pre_y):
                        for qy in range(post_y):
                            d = dout[r, o]
                            o += 1
                            if d == 0:
                                continue
                            for i in range(k):
                                gx[px, i, qx] += d * yh[py, i, qy]
                                gy[py, i, qy] += d * xh[px, i, qx]
        if normalize:
            if need_dx:
                _unnormalize_grad(x, r, pre_x, k, post_x, inv_x, gx, dx)
            if need_dy:
                _unnormalize_grad(y, r, pre_y, k, post_y, inv_y, gy, dy)
        else:
            if need_dx:
                for p in range(pre_x):
                    for i in range(k):
                        for q in range(post_x):
                            dx[r, (p * k + i) * post_x + q] += gx[p, i, q]
            if need_dy:
                for p in range(pre_y):
                    for i in range(k):
                        for q in range(post_y):
                            dy[r, (p * k + i) * post_y + q] += gy[p, i, q]


def _dot_backward(e):
    if e.dx[0] is None and e.dx[1] is None:
        return []
    xs, ys_ = (tuple(s) for s in e.x_shapes)
    (zs,) = e.y_shapes
    a, b = _dot_axes(e.attrs, [TensorType((None, *xs)), TensorType((None, *ys_))])
    a, b = a - 1, b - 1
    x2 = e.flat2(e.x[0], (math.prod(xs),), e.rows())
    y2 = e.flat2(e.x[1], (math.prod(ys_),), e.rows(1))
    dz2 = e.flat2(e.dy[0], (math.prod(zs),), e.rows(output=True))
    dx2 = e.flat2(e.dx[0], (math.prod(xs),), e.rows()) if e.dx[0] is not None else x2
    dy2 = e.flat2(e.dx[1], (math.prod(ys_),), e.rows(1)) if e.dx[1] is not None else y2
    return [
        e.call(dot_backward, x2, y2, dz2, dx2, dy2, math.prod(xs[:a]), xs[a], math.prod(xs[a + 1 :]),
               math.prod(ys_[:b]), math.prod(ys_[b + 1 :]), bool(e.attrs["normalize"]),
               e.dx[0] is not None, e.dx[1] is not None)
    ]  # fmt: skip


def _dot_reference(attrs, inputs, params, masks=None):
    x, y = inputs
    a, b = _dot_axes(attrs, [TensorType((None, *x.shape[1:])), TensorType((None, *y.shape[1:]))])
    if attrs["normalize"]:
        x = x / np.maximum(np.sqrt((x * x).sum(axis=a, keepdims=True)), DOT_EPSILON)
        y = y / np.maximum(np.sqrt((y * y).sum(axis=b, keepdims=True)), DOT_EPSILON)
    xm = np.moveaxis(x, a, -1)  # (batch, x's other axes..., k)
    ym = np.moveaxis(y, b, 1)  # (batch, k, y's other axes...)
    n = x.shape[0]
    out = np.einsum("nak,nkb->nab", xm.reshape(n, -1, xm.shape[-1]), ym.reshape(n, ym.shape[1], -1))
    shape = xm.shape[1:-1] + ym.shape[2:]
    return [out.reshape((n, *shape)) if shape else out.reshape(n, 1)]


DOT = LayerDef(
    name="Dot",
    attrs=(
        Attr(
            "axes",
            "ints",
            doc="The axis contracted in each input: one int for both, or a list of two (not the batch axis).",
            length=2,
        ),
        Attr(
            "normalize", "bool", False, "L2-normalize both inputs along their axes first (cosine similarity)."
        ),
        *COMMON_ATTRS,
    ),
    infer=_dot_infer,
    emit=_dot_emit,
    reference=_dot_reference,
    emit_backward=_dot_backward,
    arity=TWO_INPUTS,
    positional=("axes",),
    doc="Per-sample dot product of two inputs: sums the product over one axis of each. The output "
    "holds the first input's remaining axes, then the second's (batch once); a rank-1 result gets "
    "a trailing axis of size 1. The output carries no mask.",
)

LAYERS = (CONCATENATE, ADD, SUBTRACT, MULTIPLY, AVERAGE, MAXIMUM, MINIMUM, DOT)
