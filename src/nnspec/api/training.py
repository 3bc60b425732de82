"""The training half of ``Model``: compile, fit, evaluate, train_on_batch, test_on_batch.

Mixed into :class:`nnspec.api.model.Model`. Keras's semantics: ``compile`` with strings, dicts
or objects (or, called with nothing, the model file's ``training`` section); several outputs
take their losses, loss weights and metrics as lists in output order or dicts keyed by output
name; the reported ``loss`` is the sum of ``loss_weight * loss`` over outputs plus every
regularization penalty, averaged over the epoch's batches weighted by their size; per-output
losses are reported as ``<output>_loss`` and metrics as ``<output>_<metric>`` when there are
several outputs. Each step is one compiled call for forward, losses and backward, and one for
the optimizer update.
"""

from __future__ import annotations

import math

from ..specs.errors import InputError


def _per_output(value, names: list[str], what: str, default=None) -> list:
    """A value for each output from one value, a list in output order, or a dict keyed by name.

    A mapping that names no output but has a ``type`` (or Keras's ``class_name``) key is one
    value, such as a loss with arguments (``{"type": "huber", "delta": 2.0}``)."""
    if isinstance(value, dict) and not any(k in names for k in value) and ("type" in value or "class_name" in value):
        return [value] * len(names)
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            from ..specs.errors import did_you_mean

            hint = did_you_mean(str(unknown[0]), names)
            raise ValueError(
                f"{what}: unknown output '{unknown[0]}'; outputs are {names}" + (f"; {hint}" if hint else "")
            )
        return [value.get(n, default) for n in names]
    if isinstance(value, (list, tuple)) and (len(names) > 1 or what in ("loss", "loss_weights")):
        if len(value) != len(names):
            raise ValueError(f"{what}: {len(value)} given for {len(names)} output{'s' * (len(names) != 1)} {names}")
        return list(value)
    return [value] * len(names) if (value is not None or default is None) else [default] * len(names)


def _compile_record(loss, loss_weights, metrics, weighted_metrics) -> dict | None:
    """``compile``'s arguments as data, for a saved model (``Model.save``) to come back compiled:
    names and mappings as given, nnspec's loss objects as ``{type: ..., arguments}``. None when
    one is code (a Python loss function, a custom expression, a metric object)."""
    import json

    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(e) for e in v]
        if isinstance(v, dict):
            return {k: plain(e) for k, e in v.items()}
        if getattr(v, "expression", 0) is None and hasattr(v, "type") and hasattr(v, "config"):  # a LossSpec
            if v.reduction != "sum_over_batch_size":
                raise TypeError("a loss with its own reduction")
            return {"type": v.type, **v.config}
        return v

    try:
        record = {"loss": plain(loss), "loss_weights": loss_weights, "metrics": metrics,
                  "weighted_metrics": weighted_metrics}  # fmt: skip
        json.dumps(record)
    except (TypeError, ValueError):
        return None
    return record


class TrainMixin:
    optimizer = None
    stop_training = False
    compiled = False
    history = None

    # ------------------------------------------------------------------ compile

    def compile(self, optimizer=None, loss=None, metrics=None, loss_weights=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):  # fmt: skip
        """Configure training as Keras's ``compile``; with no arguments, use the file's
        ``training`` section (optimizer, loss, loss_weights, metrics). A loss is a name (one of
        the file's ``custom_losses`` too), a mapping, a ``nnspec.losses.Expression``, or a loss
        function written with ``nnspec.ops``."""
        from ..runtime.optimizers import get_optimizer

        section = self._training_section() or {}
        if optimizer is None and loss is None and metrics is None and loss_weights is None and (
            weighted_metrics is None
        ):
            optimizer = section.get("optimizer")
            loss = section.get("loss")
            loss_weights = section.get("loss_weights")
            metrics = section.get("metrics")
            weighted_metrics = section.get("weighted_metrics")
        if loss is None:
            raise ValueError(
                f"compile(): no loss given, and model '{self.name}' has no training section with one"
            )
        names = self._output_names()
        if isinstance(loss, (list, tuple)) and len(loss) == 1 == len(names):
            loss = loss[0]  # a list of one loss for one output, as Keras takes it
        if isinstance(loss_weights, (list, tuple)) and len(loss_weights) == 1 == len(names):
            loss_weights = loss_weights[0]
        self._loss_ids = _per_output(loss, names, "loss")
        lw = (
            _per_output(loss_weights, names, "loss_weights", 1.0)
            if loss_weights is not None
            else [1.0] * len(names)
        )
        self._loss_weights = [1.0 if w is None else float(w) for w in lw]
        self._metric_ids = _metrics_per_output(metrics, names, "metrics")
        self._weighted_metric_ids = _metrics_per_output(weighted_metrics, names, "weighted_metrics")
        self.optimizer = get_optimizer(optimizer if optimizer is not None else "rmsprop")
        self._trainers = {}
        self._specs_memo = {}
        self._lw_memo = {}
        self._metrics = None
        self.compiled = True
        self._compile_record = _compile_record(loss, loss_weights, metrics, weighted_metrics)
        self.stop_training = False

    def _output_names(self) -> list[str]:
        memo = self.__dict__.get("_out_names_memo")
        if memo is None or memo[0] is not self._typed:
            memo = (self._typed, self._typed.graph.output_names)
            self.__dict__["_out_names_memo"] = memo
        return memo[1]

    def _require_compiled(self) -> None:
        if not self.compiled:
            raise RuntimeError(f"model '{self.name}' must be compiled before training or evaluating: call "
                               "model.compile(optimizer=..., loss=...) (or compile() to use the file's training section)")  # fmt: skip

    # ------------------------------------------------------------------ data

    def _prepare_targets(self, y, n: int) -> list:
        import numpy as np

        names = self._output_names()
        if y is None:
            raise InputError("targets (y) are required for training and evaluation")
        if isinstance(y, dict):
            unknown = [k for k in y if k not in names]  # first: a misspelt key also leaves one missing
            if unknown:
                raise InputError(f"targets for unknown output '{unknown[0]}' (outputs: {names})")
            missing = [k for k in names if k not in y and self._loss_ids[names.index(k)] is not None]
            if missing:
                raise InputError(f"missing targets for output '{missing[0]}' (outputs: {names})")
            ys = [y.get(k) for k in names]
        elif isinstance(y, (list, tuple)) and len(names) > 1:
            if len(y) != len(names):
                raise InputError(
                    f"model '{self.name}' has {len(names)} outputs {names}; got {len(y)} target arrays"
                )
            ys = list(y)
        else:
            if len(names) == 1 and isinstance(y, (list, tuple)) and len(y) == 1 and isinstance(y[0], np.ndarray):
                y = y[0]  # [y] for a model with one output, as Keras takes it
            ys = [y] if len(names) == 1 else None
            if ys is None:
                raise InputError(
                    f"model '{self.name}' has {len(names)} outputs {names}: give targets as a list or dict"
                )
        out = []
        for name, t, spec in zip(names, ys, self._loss_specs_for(ys)):
            if t is None:
                out.append(None)
                continue
            arr = np.asarray(t)
            if arr.dtype.kind not in "biuf":
                raise InputError(f"targets for '{name}': expected numbers; got dtype {arr.dtype}")
            if arr.shape[0] != n:
                raise InputError(f"targets for '{name}' have {arr.shape[0]} samples; the inputs have {n}")
            sparse = spec is not None and spec.sparse
            checked = self.__dict__.setdefault("_targets_checked", set())
            if (name, arr.shape, sparse) not in checked:
                out_shape = self._typed.type_of(self._typed.graph.outputs[names.index(name)]).shape
                self._check_target_shape(name, arr.shape, out_shape, sparse)
                checked.add((name, arr.shape, sparse))
            out.append(np.ascontiguousarray(arr, dtype=np.int32 if sparse else np.float32))
        return out

    @staticmethod
    def _check_target_shape(name: str, got: tuple, out_shape: tuple, sparse: bool) -> None:
        """Targets must hold what the output holds per sample (class ids: one per output row);
        a trailing axis of 1 may be added or left out, as Keras allows."""
        want = tuple(out_shape[1:-1]) if sparse else tuple(out_shape[1:])
        norm = lambda s: tuple(s[:-1]) if s and s[-1] == 1 else tuple(s)
        g, w = norm(tuple(got[1:])), norm(want)
        if len(g) == len(w) and all(a is None or a == b for a, b in zip(w, g)):
            return
        kind = "class ids of shape" if sparse else "targets of shape"
        expect = "(batch, " + ", ".join("?" if d is None else str(d) for d in want) + ")"
        raise InputError(f"targets for output '{name}': expected {kind} {expect} to match the output {tuple(out_shape)}; "
                         f"got {tuple(got)}")  # fmt: skip

    def _loss_specs_for(self, ys) -> list:
        """The loss of each output for targets ``ys`` (resolved by their shapes, as Keras resolves
        sparse or dense forms); memoized per target shapes, so a training loop resolves once."""
        from ..runtime.losses import get_loss

        key = tuple(None if t is None else getattr(t, "shape", None) for t in ys)
        memo = self.__dict__.setdefault("_specs_memo", {})
        specs = memo.get(key)
        if specs is not None:
            return specs
        specs = memo[key] = []
        out_types = [self._typed.type_of(r) for r in self._typed.graph.outputs]
        for lid, t, ot in zip(self._loss_ids, ys, out_types):
            if lid is None:
                specs.append(None)
                continue
            yshape = None if t is None else getattr(t, "shape", None)
            specs.append(get_loss(lid, yshape, ot.shape, self._custom_losses()))
        return specs

    def _custom_losses(self) -> dict:
        """The model file's ``custom_losses`` (name -> expression), which ``compile`` takes by name."""
        doc = self._typed.graph.doc
        found = doc.data.get("custom_losses") if doc is not None else None
        return dict(found) if isinstance(found, dict) else {}

    def _sample_weights(self, sample_weight, class_weight, ys, n: int) -> list:
        import numpy as np

        names = self._output_names()
        sws = (
            _per_output(sample_weight, names, "sample_weight")
            if sample_weight is not None
            else [None] * len(names)
        )
        out = []
        for k, (sw, t) in enumerate(zip(sws, ys)):
            if class_weight is not None and t is not None:
                labels = t.argmax(-1) if (t.ndim > 1 and t.shape[-1] > 1) else t.reshape(t.shape[0], -1)[:, 0]
                cw = np.array(
                    [class_weight.get(int(c), 1.0) for c in np.asarray(labels).reshape(-1)], np.float32
                )
                cw = cw.reshape(np.asarray(labels).shape)
                sw = cw if sw is None else np.asarray(sw, np.float32) * cw
            if sw is not None:
                sw = np.asarray(sw, np.float32)
                if sw.shape[0] != n:
                    raise InputError(
                        f"sample_weight for '{names[k]}' has {sw.shape[0]} entries; there are {n} samples"
                    )
            out.append(sw)
        return out

    def _rows_weight(self, sw, k: int, n: int):
        """A sample weight as one float32 per loss row (repeated over time steps)."""
        import numpy as np

        if sw is None:
            return None
        ot = self._typed.type_of(self._typed.graph.outputs[k])
        rows_per_sample = math.prod(d for d in ot.shape[1:-1] if d is not None) if len(ot.shape) > 2 else 1
        sw = np.asarray(sw, np.float32).reshape(n, -1)
        if sw.shape[1] == rows_per_sample:
            return np.ascontiguousarray(sw.reshape(-1))
        if sw.shape[1] == 1:
            return np.ascontiguousarray(np.repeat(sw[:, 0], rows_per_sample))
        raise InputError(f"sample_weight of shape {sw.shape} does not fit output {ot.shape}")

    # ------------------------------------------------------------------ machinery

    def _trainer(self, shapes: tuple, specs: list):
        key = (shapes, id(specs))  # specs lists are memoized: one object per loss configuration
        tr = self._trainers.get(key)
        if tr is None:
            from ..compiler.lower import lower
            from ..compiler.plan import Plan
            from ..compiler.shapes import infer_types
            from ..layerdefs.base import TensorType
            from ..runtime.train_codegen import LossBinding
            from ..runtime.trainer import Trainer

            typed = self._typed
            if any(d is None for t in typed.input_types.values() for d in t.shape[1:]):
                types = {
                    n: TensorType((t.shape[0], *s), t.dtype) for (n, t), s in zip(typed.input_types.items(), shapes)
                }
                typed = infer_types(typed.graph, input_types=types)
            plan = lower(typed, training=True)
            store = self._weights()
            plan = Plan(plan.model, plan.inputs, plan.outputs, plan.values,
                        [store.params[p.name] for p in plan.params], plan.steps, plan.buffers)  # fmt: skip
            bindings = [None if s is None else LossBinding(s.kernel, s.args, s.sparse) for s in specs]
            bindings += [None] * (len(plan.outputs) - len(bindings))  # a stateful layer's final states
            tr = Trainer(plan, bindings)
            self._trainers[key] = tr
        return tr

    def _segments(self):
        from ..runtime.optimizers import variable_segments

        store = self._weights()
        key = id(store)
        if getattr(self, "_segments_key", None) != key:
            params = [p for p in store.params.values() if p.trainable]
            self._segments_cache = variable_segments([p.shape for p in params], [p.offset for p in params])
            self._segment_names = [p.name for p in params]
            self._segments_key = key
        return self._segments_cache

    def _build_metrics(self, ys, specs) -> list:
        """``(output index, log name, metric, weighted)`` per metric, named as Keras 3 names them:
        ``metrics`` are not weighted by sample or class weights, ``weighted_metrics`` are; a name
        met again gets ``_1``, ``_2``... (a weighted one ``weighted_<name>`` first); with several
        outputs names start with the output's."""
        from ..runtime.metrics import get_metric

        names = self._output_names()
        out, seen = [], {}
        groups = [(self._metric_ids, False), (self._weighted_metric_ids, True)]
        for ids_per_output, weighted in groups:
            for k, (ids, t, spec) in enumerate(zip(ids_per_output, ys, specs)):
                ot = self._typed.type_of(self._typed.graph.outputs[k])
                prefix = "" if len(names) == 1 else f"{names[k]}_"
                for mid in ids:
                    m = get_metric(mid, None if t is None else t.shape, ot.shape, spec, self._custom_losses())
                    label = prefix + m.name
                    if label in seen and weighted:
                        label = f"{prefix}weighted_{m.name}"
                    if label in seen:
                        seen[label] += 1
                        label = f"{label}_{seen[label] - 1}"
                    else:
                        seen[label] = 1
                    out.append((k, label, m, weighted))
        return out

    def reset_metrics(self) -> None:
        for _, _, m, _ in self._metrics or []:
            m.reset_state()

    # ------------------------------------------------------------------ one step

    def _train_batch(self, xs, ys, sws, specs):
        import numpy as np

        n = xs[0].shape[0]
        shapes = tuple(a.shape[1:] for a in xs)
        tr = self._trainer(shapes, specs)
        store = self._weights()
        kept = self._kept_states_in(tr.plan, n)
        _, state_names = self._state_io(tr.plan)
        targets = [np.zeros((n,) + (1,), np.float32) if t is None else t for t in ys]
        rows_w = [self._rows_weight(sw, k, n) for k, sw in enumerate(sws)]
        lw = self._lw_memo.get(id(specs))
        if lw is None:
            lw = np.array(
                [w if s is not None else 0.0 for w, s in zip(self._loss_weights, specs)] + [0.0] * len(state_names),
                np.float64,
            )
            self._lw_memo[id(specs)] = lw
        if state_names:  # the final states are outputs without a loss
            targets += [np.zeros((n, 1), np.float32)] * len(state_names)
            rows_w += [None] * len(state_names)
        out = tr.run([*xs, *kept], targets, rows_w, store.tp, store.ntp, lw)
        self.optimizer.apply(store.tp, tr.grads, self._segments())
        tr.apply_constraints(store)
        store.touch()
        outputs = tr.outputs(n) if (self._metrics or state_names) else None
        if state_names:
            outputs = self._keep_states_out(tr.plan, outputs)
            out = np.append(out[: len(out) - 1 - len(state_names)], out[-1])  # per-output losses, then the total
        return out, (outputs if self._metrics else None)  # outputs only feed metrics

    def _update_logs(self, trackers: dict, out, n: int, outputs, ys, sws, specs) -> dict:
        names = self._output_names()
        k_out = len(names)
        trackers["loss"] = trackers.get("loss", (0.0, 0))
        s, c = trackers["loss"]
        trackers["loss"] = (s + float(out[k_out]) * n, c + n)
        if k_out > 1:
            for k, name in enumerate(names):
                if specs[k] is None:
                    continue
                s, c = trackers.get(f"{name}_loss", (0.0, 0))
                trackers[f"{name}_loss"] = (s + float(out[k]) * n, c + n)
        for k, _, m, weighted in self._metrics:
            if ys[k] is None:
                continue
            m.update_state(ys[k], outputs[k], sample_weight=sws[k] if weighted else None)
        logs = {k: (s / c if c else 0.0) for k, (s, c) in trackers.items()}
        for _, label, m, _ in self._metrics:
            logs[label] = _log_value(m.result())
        return logs

    # ------------------------------------------------------------------ public API

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict: bool = False):
        self._require_compiled()
        xs = self._prepare_inputs(x)
        n = xs[0].shape[0]
        ys = self._prepare_targets(y, n)
        specs = self._loss_specs_for(ys)
        sws = self._sample_weights(sample_weight, class_weight, ys, n)
        if self._metrics is None:
            self._metrics = self._build_metrics(ys, specs)
        out, outputs = self._train_batch(xs, ys, sws, specs)
        logs = self._update_logs({}, out, n, outputs, ys, sws, specs)
        return self._logs_result(logs, return_dict)

    def _logs_result(self, logs: dict, return_dict: bool):
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict: bool = False):
        self._require_compiled()
        xs = self._prepare_inputs(x)
        n = xs[0].shape[0]
        ys = self._prepare_targets(y, n)
        specs = self._loss_specs_for(ys)
        sws = self._sample_weights(sample_weight, None, ys, n)
        if self._metrics is None:
            self._metrics = self._build_metrics(ys, specs)
        logs = self._evaluate_batches([xs], [ys], [sws], specs, reset=False)
        return self._logs_result(logs, return_dict)

    def _eval_loss(self, xs, ys, sws, specs):
        """Forward (inference) pass and the losses, as Keras's test step: (total, per output, outputs)."""
        from ..runtime.losses import compute_loss

        n = xs[0].shape[0]
        specs_act = self._activity_regularizers()
        outputs = self._run_batch(xs, activity=bool(specs_act))
        n_out = len(self._typed.graph.outputs)
        outputs, activity = outputs[:n_out], outputs[n_out:]
        per = []
        total = 0.0
        for k, (spec, t, o) in enumerate(zip(specs, ys, outputs)):
            if spec is None or t is None:
                per.append(0.0)
                continue
            mask = self._eval_mask(xs, k)
            value = compute_loss(spec, t, o, sws[k], mask)[0]
            per.append(value)
            total += self._loss_weights[k] * value
        total += self._penalty(n)
        if activity:  # activity penalties, over the batch size, as the training step adds them
            from ..runtime.regularizers import activity_scale, get_regularizer

            for spec, value in zip(specs_act, activity):
                total += get_regularizer(spec).penalty(value) * activity_scale(n)
        return total, per, outputs

    def _activity_regularizers(self) -> list:
        """The activity regularizer of each extra output of ``lower(..., activity=True)``, in order
        (empty when no step has one)."""
        cached = self.__dict__.get("_activity_specs")
        if cached is None:
            from ..compiler.lower import lower
            from ..compiler.plan import activity_regularizer_of

            plan = lower(self._typed, activity=True)
            made_by = {o: st for st in plan.steps for o in st.outputs}
            extra = [(n, v) for n, v in plan.outputs[len(self._typed.graph.outputs) :] if n.startswith("activity:")]
            cached = [activity_regularizer_of(made_by[v].op, made_by[v].attrs, made_by[v].node) for _, v in extra]
            self.__dict__["_activity_specs"] = cached
        return cached

    def _eval_mask(self, xs, k: int):
        """The Keras mask of output k for these inputs (None when the output carries none)."""
        plan = self.plan()
        vals = {v.id: v for v in plan.values}
        _, vid = plan.outputs[k]
        if vals[vid].mask is None:
            return None
        return self._mask_values(xs, vals[vid].mask)

    def _mask_values(self, xs, mask_vid):
        """Compute a mask value with a plan whose only output is that mask."""
        import numpy as np

        plan = self.plan()
        step = next(s for s in plan.steps if mask_vid in s.outputs)
        src = step.inputs[0]
        names = [n for n, v in plan.inputs if v == src]
        if names and step.op == "mask_not_equal_zero":
            ids = xs[[n for n, _ in plan.inputs].index(names[0])]
            return (ids != 0).astype(np.float32)
        if names and step.op == "mask_any_not_equal":  # Masking right after an input
            x = xs[[n for n, _ in plan.inputs].index(names[0])]
            return (x != np.float32(step.attrs["mask_value"])).any(axis=-1).astype(np.float32)
        raise NotImplementedError("masks computed from intermediate values are not supported in evaluate yet")

    def _penalty(self, n: int) -> float:
        from ..runtime.regularizers import get_regularizer

        store = self._weights()
        total = 0.0
        for p in store.params.values():
            if p.regularizer is not None and p.trainable:
                total += get_regularizer(p.regularizer).penalty(store.view(p.name))
        return total

    def _evaluate_batches(self, xs_list, ys_list, sws_list, specs, reset: bool = True) -> dict:
        names = self._output_names()
        if reset:
            self.reset_metrics()
        trackers: dict = {}
        for xs, ys, sws in zip(xs_list, ys_list, sws_list):
            n = xs[0].shape[0]
            total, per, outputs = self._eval_loss(xs, ys, sws, specs)
            s, c = trackers.get("loss", (0.0, 0))
            trackers["loss"] = (s + total * n, c + n)
            if len(names) > 1:
                for k, name in enumerate(names):
                    if specs[k] is not None:
                        s, c = trackers.get(f"{name}_loss", (0.0, 0))
                        trackers[f"{name}_loss"] = (s + per[k] * n, c + n)
            for k, _, m, weighted in self._metrics:
                if ys[k] is not None:
                    m.update_state(ys[k], outputs[k], sample_weight=sws[k] if weighted else None)
        logs = {k: (s / c if c else 0.0) for k, (s, c) in trackers.items()}
        for _, label, m, _ in self._metrics:
            logs[label] = _log_value(m.result())
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict: bool = False):  # fmt: skip
        """Loss and metrics over ``x``; a scalar loss, or ``[loss, *metrics]``, or a dict."""
        self._require_compiled()
        batches = self._batches(x, y, sample_weight, None, batch_size or 32, shuffle=False, steps=steps)
        xs_l, ys_l, sws_l, specs = [], [], [], None
        for xs, ys, sws in batches:
            if specs is None:
                specs = self._loss_specs_for(ys)
                if self._metrics is None:
                    self._metrics = self._build_metrics(ys, specs)
            xs_l.append(xs)
            ys_l.append(ys)
            sws_l.append(sws)
        logs = self._evaluate_batches(xs_l, ys_l, sws_l, specs)
        return self._logs_result(logs, return_dict)

    def _batches(self, x, y, sample_weight, class_weight, batch_size: int, shuffle, steps=None, rng=None):
        """Yield (inputs, targets, sample weights) per batch from arrays or an iterable of batches."""
        import numpy as np

        if _is_batch_source(x):
            import itertools

            # islice: with ``steps`` a generator gives exactly that many batches per epoch and
            # the next epoch continues where this one stopped (no batch drawn and dropped)
            for item in x if steps is None else itertools.islice(x, steps):
                bx, by, bsw = _unpack(item)
                xs = self._prepare_inputs(bx)
                n = xs[0].shape[0]
                ys = self._prepare_targets(by, n)
                yield xs, ys, self._sample_weights(bsw, class_weight, ys, n)
            return
        xs = self._prepare_inputs(x)
        n = xs[0].shape[0]
        ys = self._prepare_targets(y, n)
        sws = self._sample_weights(sample_weight, class_weight, ys, n)
        order = (rng or np.random.default_rng()).permutation(n) if shuffle else None
        for start in range(0, n, batch_size):
            if order is None:
                sl = slice(start, start + batch_size)
                take = lambda a, sl=sl: None if a is None else a[sl]
            else:
                idx = order[start : start + batch_size]
                take = lambda a, idx=idx: None if a is None else np.take(a, idx, axis=0)
            yield [take(a) for a in xs], [take(t) for t in ys], [take(w) for w in sws]

    def fit(self, x=None, y=None, batch_size=None, epochs: int = 1, verbose="auto", callbacks=None,
            validation_split: float = 0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch: int = 0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq: int = 1, seed=None):  # fmt: skip
        """Train as Keras's ``fit``; returns the History callback."""
        import numpy as np

        from ..runtime.callbacks import CallbackList
        from ..runtime.kernels import seed_kernels

        self._require_compiled()
        batch_size = batch_size or 32
        verbose = 1 if verbose == "auto" else int(verbose)
        if validation_split and validation_data is None:
            if _is_batch_source(x):
                raise ValueError("validation_split needs arrays; give validation_data with a generator")
            if not 0.0 < validation_split < 1.0:
                raise ValueError(f"validation_split must be in (0, 1); got {validation_split}")
            x, y, sample_weight, validation_data = _split(self, x, y, sample_weight, validation_split)
        rng = np.random.default_rng(seed if seed is not None else self._seed)
        seed_kernels(int(rng.integers(0, 2**31 - 1)))
        steps = steps_per_epoch
        if steps is None and not _is_batch_source(x):
            n = self._prepare_inputs(x)[0].shape[0]
            steps = math.ceil(n / batch_size)
        cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self, verbose=verbose,
                           epochs=epochs, steps=steps)  # fmt: skip
        self.stop_training = False
        cbs.on_train_begin()
        logs: dict = {}
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()
            cbs.on_epoch_begin(epoch)
            trackers: dict = {}
            for b, (xs, ys, sws) in enumerate(
                self._batches(x, y, sample_weight, class_weight, batch_size, shuffle, steps_per_epoch, rng)
            ):
                specs = self._loss_specs_for(ys)
                if self._metrics is None:
                    self._metrics = self._build_metrics(ys, specs)
                cbs.on_train_batch_begin(b)
                out, outputs = self._train_batch(xs, ys, sws, specs)
                logs = self._update_logs(trackers, out, xs[0].shape[0], outputs, ys, sws, specs)
                cbs.on_train_batch_end(b, logs)
                if self.stop_training:
                    break
            epoch_logs = dict(logs)
            if validation_data is not None and (epoch + 1) % validation_freq == 0:
                vx, vy, vsw = _unpack(validation_data)
                val = self.evaluate(vx, vy, batch_size=validation_batch_size or batch_size, sample_weight=vsw,
                                    steps=validation_steps, return_dict=True, verbose=0)  # fmt: skip
                epoch_logs.update({f"val_{k}": v for k, v in val.items()})
            cbs.on_epoch_end(epoch, epoch_logs)
            logs = epoch_logs
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        return self.history


def _metrics_per_output(metrics, names: list[str], what: str) -> list[list]:
    """The metrics of each output, as Keras 3's ``compile`` reads them: a dict keyed by output
    name; for several outputs, a list with one entry (a metric, a list of them, or None) per
    output; for one output, every metric of a list, nested lists flattened. Any other list
    applies to every output (Keras 3 refuses it; Keras 2 did this)."""
    if isinstance(metrics, dict):  # keyed by output, or one metric mapping (``_per_output``)
        return [_as_list(m) for m in _per_output(metrics, names, what, [])]
    if isinstance(metrics, (list, tuple)) and len(names) > 1 and len(metrics) == len(names):
        return [_as_list(m) for m in metrics]
    if isinstance(metrics, (list, tuple)) and len(names) == 1:
        flat: list = []
        for m in metrics:
            flat.extend(_as_list(m))
        return [flat]
    return [_as_list(metrics)] * len(names)


def _log_value(result):
    """A metric's result as the logs hold it: a float, or an array for a metric with one value
    per class or threshold (``F1Score()``, ``Precision(thresholds=[...])``), as Keras's logs do."""
    import numpy as np

    return float(result) if np.ndim(result) == 0 else np.asarray(result, np.float32)


def _as_list(v) -> list:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _is_batch_source(x) -> bool:
    import numpy as np

    if x is None or isinstance(x, (np.ndarray, dict)):
        return False
    if isinstance(x, (list, tuple)):
        return False
    return hasattr(x, "__iter__") or hasattr(x, "__next__")


def _unpack(item):
    if isinstance(item, tuple):
        if len(item) == 2:
            return item[0], item[1], None
        if len(item) == 3:
            return item
    if isinstance(item, list) and len(item) in (2, 3):
        return tuple(item) + ((None,) if len(item) == 2 else ())
    raise ValueError("each batch must be a tuple (x, y) or (x, y, sample_weight)")


def _split(model, x, y, sw, fraction: float):
    """Keras's validation_split: the last ``fraction`` of the samples, before shuffling."""
    xs = model._prepare_inputs(x)
    n = xs[0].shape[0]
    cut = int(n * (1.0 - fraction))
    names = list(model._typed.graph.inputs)

    def head(a):
        return None if a is None else a[:cut]

    def tail(a):
        return None if a is None else a[cut:]

    def each(v, f):
        if isinstance(v, dict):
            return {k: f(a) for k, a in v.items()}
        if isinstance(v, (list, tuple)):
            return [f(a) for a in v]
        return f(v)

    import numpy as np

    yy = each(y, np.asarray)
    ss = None if sw is None else each(sw, np.asarray)
    xd = dict(zip(names, xs))
    return (each(xd, head), each(yy, head), None if ss is None else each(ss, head),
            (each(xd, tail), each(yy, tail), None if ss is None else each(ss, tail)))  # fmt: skip
