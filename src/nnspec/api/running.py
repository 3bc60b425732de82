"""The running half of ``Model``: predict, weights, weights files.

Mixed into :class:`nnspec.api.model.Model`. Nothing here imports NumPy or Numba until a model
is first run, so loading and summarizing stay cheap.
"""

from __future__ import annotations

import os

from ..specs.errors import InputError, WeightsError

_DTYPE_KIND = {"float32": "f", "float64": "f", "float16": "f", "int32": "i", "int64": "i", "int8": "i",
               "uint8": "u", "bool": "b"}  # fmt: skip


class RunMixin:
    _seed = None
    _store = None
    _store_owner = None

    # ------------------------------------------------------------------ weights

    def _weights(self):
        """The WeightStore, made on first use (initialized as Keras does, from the seed)."""
        if self._store is None:
            from ..runtime.weights import WeightStore

            shared, source = self._shared_store()
            self._store = shared if shared is not None else WeightStore(self.plan().params, self._seed)
            if shared is None and source is not None:  # new layers too: the old ones keep their values
                for name in self._store.params:
                    if name in source.params:
                        self._store.assign(name, source.view(name))
            for layer in self._layers.values():  # weights a layer computed before it was in a model
                adapted = getattr(layer, "_adapted", None)
                if adapted is not None and getattr(layer, "_model_ref", None) is self:
                    layer.set_weights(adapted)
            # a new store starts from the sub-models' and callers' stores that exist (a model the
            # user built and then called as a layer brings its weights); a shared one is current
            self._pull_weights(set(), initial=shared is None)
        elif self._subs or self.__dict__.get("_parents"):
            self._pull_weights(set())
        return self._store

    # A sub-model's weights live in two places: its own store (``sub.predict``, its layers'
    # get_weights) and the store of each model that calls it (under the calling layer's name).
    # As in Keras, where they are the same variables, a change to either is seen by the other:
    # each access pulls the newest copy (the stores' versions), through the nesting both ways.

    def _sub_links(self) -> list:
        """(sub-model name, sub-model, the calling layer's name prefix) of every sub-model this
        model calls (directly, or under TimeDistributed)."""
        memo = self.__dict__.get("_links_memo")
        if memo is None or memo[0] is not self._typed:
            from ..compiler.shapes import _called_model

            down = []
            for layer, calls in self._typed.layer_nodes().items():
                node = calls[0].node
                mname = _called_model(node.attrs) if node.type in ("Model", "TimeDistributed") else None
                if mname in self._subs:
                    down.append((mname, self._subs[mname], f"{layer}/"))
            memo = (self._typed, down)
            self.__dict__["_links_memo"] = memo
        return memo[1]

    def _weight_links(self) -> list:
        """(model, this model's name prefix, that model's prefix) for every model this one shares
        weights with by nesting: the sub-models it calls and the models that call it."""
        down = [(sub, prefix, "") for _, sub, prefix in self._sub_links()]
        up = [(parent, "", prefix) for parent in list(self.__dict__.get("_parents", ()))
              for _, sub, prefix in parent._sub_links() if sub is self]  # fmt: skip
        return down + up

    def _pull_weights(self, seen: set, initial: bool = False) -> None:
        """Copy into this model's store what a linked store holds newer (every linked store that
        exists, for a store just made), first letting those pull from theirs."""
        if id(self) in seen:
            return
        seen.add(id(self))
        store = self._store
        for other, mine, theirs in self._weight_links():
            if other._store is None:
                continue  # it starts from this one when it is made
            other._pull_weights(seen)
            source = other._store
            if source is store or (not initial and source.version <= store.version):
                continue
            for name, p in source.params.items():
                target = mine + name[len(theirs) :] if name.startswith(theirs) else None
                if target in store.params and tuple(store.params[target].shape) == tuple(p.shape):
                    store.view(target)[...] = source.view(name)  # (a rebuilt sub-model may differ)
            store.version = max(store.version, source.version)

    def _shared_store(self):
        """(the store to share, the store to copy from): a model built from another model's
        layers shares that model's weights (made now if that model has not used them yet); one
        that adds layers of its own starts from their values."""
        sources = {id(m): m for m in getattr(self, "_weight_sources", ())}
        if len(sources) != 1:
            return None, None
        (source,) = sources.values()
        store = source._weights()
        names = {p.name for p in self.plan().params}
        return (store, None) if names <= set(store.params) else (None, store)

    def get_weights(self) -> list:
        """Every weight array, layer by layer in Keras's order (``layers``), each layer's in Keras's order."""
        store = self._weights()
        return [store.view(p.name).astype(p.dtype) for p in self.plan().params]

    def set_weights(self, weights) -> None:
        params = self.plan().params
        weights = list(weights)
        if len(weights) != len(params):
            raise WeightsError(f"model '{self.name}' has {len(params)} weight arrays; set_weights got {len(weights)}"
                               f" (order: {', '.join(p.name for p in params[:6])}{', ...' if len(params) > 6 else ''})")  # fmt: skip
        import numpy as np

        store = self._weights()
        for p, w in zip(params, weights):
            a = np.asarray(w)
            if a.shape != tuple(p.shape):
                raise WeightsError(f"set_weights: layer '{p.layer}' weight '{p.name}': expected shape "
                                   f"{tuple(p.shape)}, found {a.shape}")  # fmt: skip
        for p, w in zip(params, weights):
            store.assign(p.name, w)

    def save_weights(self, path) -> None:
        """Write every weight to a safetensors file (tensor names ``<layer>/<weight>``), atomically."""
        from ..runtime.weights import write_safetensors

        store = self._weights()
        tensors = {p.name: store.view(p.name) for p in self.plan().params}
        write_safetensors(path, tensors, {"format": "nnspec-weights/1", "model": self.name})

    def save(self, filepath, overwrite: bool = True) -> None:
        """Save the whole model to one file, as Keras's ``model.save``: the model file (its
        config), the weights, and, once compiled, the ``compile`` arguments (when they are data:
        names and mappings) and the optimizer's state. ``nnspec.models.load_model`` reads it
        back, compiled. The file is a safetensors checkpoint (``load_checkpoint`` reads it too),
        written atomically."""
        from ..runtime.callbacks import save_checkpoint

        if not overwrite and os.path.exists(filepath):
            raise FileExistsError(f"{os.fspath(filepath)} exists (overwrite=False)")
        save_checkpoint(filepath, self)

    def load_weights(self, path, by_name: bool = False, skip_mismatch: bool = False) -> dict:
        """Read weights from a safetensors file.

        Strict by default: a missing tensor, an extra one or a shape mismatch is an error naming
        the layer, the weight and both shapes, and nothing is changed. With ``by_name=True`` the
        tensors that match are loaded and the rest reported in the returned dict
        (``loaded``, ``missing``, ``unexpected``, ``mismatched``).
        """
        from ..runtime.weights import read_safetensors

        tensors = read_safetensors(path)
        params = {p.name: p for p in self.plan().params}
        missing = [n for n in params if n not in tensors]
        unexpected = [n for n in tensors if n not in params]
        mismatched = [
            (n, tuple(params[n].shape), tuple(t.shape)) for n, t in tensors.items()
            if n in params and tuple(t.shape) != tuple(params[n].shape)
        ]  # fmt: skip
        where = f"{os.fspath(path)}: "
        if not by_name:
            problems = []
            for n in missing:
                problems.append(f"missing tensor '{n}' (layer '{params[n].layer}', shape {tuple(params[n].shape)})")
            for n in unexpected:
                problems.append(f"unexpected tensor '{n}' (shape {tuple(tensors[n].shape)}): no such weight in "
                                f"model '{self.name}'")  # fmt: skip
            for n, want, got in mismatched:
                problems.append(f"layer '{params[n].layer}' weight '{n}': expected shape {want}, found {got}")
            if problems:
                raise WeightsError(where + "; ".join(problems))
        store = self._weights()
        loaded = []
        bad = {n for n, _, _ in mismatched}
        for n, t in tensors.items():
            if n in params and n not in bad:
                store.assign(n, t, where=where)
                loaded.append(n)
        return {"loaded": loaded, "missing": missing, "unexpected": unexpected, "mismatched": mismatched}

    # ------------------------------------------------------------------ running

    def _executor(self, shapes: tuple, activity: bool = False):
        """The compiled executor for inputs of these per-sample shapes (cached); with
        ``activity``, its outputs also hold the values of the steps with an activity regularizer
        (``lower(..., activity=True)``), for evaluation's loss."""
        cache = self.__dict__.setdefault("_executors", {})
        key = (shapes, "activity") if activity else shapes
        ex = cache.get(key)
        if ex is None:
            from ..compiler.lower import lower
            from ..compiler.plan import Plan
            from ..compiler.shapes import infer_types
            from ..layerdefs.base import TensorType
            from ..runtime.executor import Executor

            g = self._typed.graph
            if any(d is None for t in self._typed.input_types.values() for d in t.shape[1:]):
                types = {n: TensorType((t.shape[0], *s), t.dtype) for (n, t), s in zip(self._typed.input_types.items(), shapes)}
                typed = infer_types(g, input_types=types)
            else:
                typed = self._typed
            plan = lower(typed, activity=activity)
            store = self._weights()
            plan = Plan(plan.model, plan.inputs, plan.outputs, plan.values,
                        [store.params[p.name] for p in plan.params], plan.steps, plan.buffers)  # fmt: skip
            ex = Executor(plan)
            cache[key] = ex
        return ex

    def _prepare_inputs(self, x) -> list:
        import numpy as np

        g = self._typed.graph
        # Fast path: one input, an array of a dtype and per-sample shape this model already took
        # as they are (no conversion, C-contiguous) - what a predict_on_batch loop passes.
        ok = self.__dict__.get("_inputs_ok")
        if (ok is not None and ok[0] is g and type(x) is np.ndarray and x.flags.c_contiguous
                and (x.dtype, x.shape[1:]) in ok[1]):  # fmt: skip
            return [x]
        names = list(g.inputs)
        if isinstance(x, dict):
            unknown = [k for k in x if k not in g.inputs]
            if unknown:
                from ..specs.errors import did_you_mean

                hint = did_you_mean(unknown[0], names)
                raise InputError(f"unknown input '{unknown[0]}'; model '{self.name}' takes {names}"
                                 + (f"; {hint}" if hint else ""))  # fmt: skip
            missing = [n for n in names if n not in x]
            if missing:
                raise InputError(f"missing input '{missing[0]}' (model '{self.name}' takes {names})")
            arrays = [x[n] for n in names]
        elif isinstance(x, (list, tuple)) and len(names) > 1:
            if len(x) != len(names):
                raise InputError(f"model '{self.name}' takes {len(names)} inputs {names}; got {len(x)} arrays")
            arrays = list(x)
        else:
            if len(names) != 1:
                raise InputError(f"model '{self.name}' takes {len(names)} inputs {names}; pass a list or a dict")
            rank = len(g.inputs[names[0]].shape) + 1
            if isinstance(x, (list, tuple)) and len(x) == 1 and np.ndim(x[0]) == rank:
                x = x[0]  # [x] for a model with one input, as Keras takes it
            arrays = [x]
        out = []
        n = None
        for name, a in zip(names, arrays):
            decl = g.inputs[name]
            try:
                arr = np.asarray(a)
            except Exception as e:
                raise InputError(f"input '{name}': cannot be read as an array ({e})") from None
            want = (None, *decl.shape)
            if arr.ndim != len(want):
                raise InputError(f"input '{name}': expected an array of rank {len(want)} with shape "
                                 f"{_shape_text(want)}; got shape {arr.shape}")  # fmt: skip
            for i, (w, d) in enumerate(zip(want[1:], arr.shape[1:]), start=1):
                if w is not None and w != d:
                    raise InputError(f"input '{name}': expected shape {_shape_text(want)}; got {arr.shape} "
                                     f"(axis {i} is {d}, expected {w})")  # fmt: skip
            kind = _DTYPE_KIND.get(decl.dtype, "f")
            if arr.dtype.kind not in "biuf":
                raise InputError(f"input '{name}': expected numbers ({decl.dtype}); got dtype {arr.dtype}")
            if kind in "iu" and arr.dtype.kind == "f":
                if arr.size and not np.all(np.isfinite(arr)) or (arr.size and np.any(arr != np.round(arr))):
                    raise InputError(f"input '{name}': expected integer ids ({decl.dtype}); got non-integer floats")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise InputError(f"inputs have different batch sizes: '{names[0]}' has {n}, '{name}' has {arr.shape[0]}")
            out.append(np.ascontiguousarray(arr, dtype=decl.dtype))
        if len(out) == 1 and out[0] is arrays[0] and isinstance(x, np.ndarray) and out[0].ndim:
            if ok is None or ok[0] is not g:
                ok = (g, set())
                self.__dict__["_inputs_ok"] = ok
            ok[1].add((x.dtype, x.shape[1:]))
        return out

    def _run_batch(self, arrays: list, activity: bool = False) -> list:
        shapes = tuple(a.shape[1:] for a in arrays)
        ex = self._executor(shapes, activity)
        store = self._weights()
        kept = self._kept_states_in(ex.plan, arrays[0].shape[0] if arrays else 0)
        try:
            outs = ex([*arrays, *kept] if kept else arrays, store.tp, store.ntp)
        except (ValueError, IndexError) as e:
            raise InputError(str(e)) from None
        return self._keep_states_out(ex.plan, outs)

    # ------------------------------------------------------------------ stateful layers

    def _state_io(self, plan) -> tuple:
        """(each state input's name and per-sample shape, the state outputs' names) of a plan:
        its stateful recurrent calls' (lower.lower_stateful), inputs and outputs both last."""
        memo = plan.__dict__.get("_state_io")
        if memo is None:
            from ..compiler.lower import STATE_PREFIX

            vals = {v.id: v for v in plan.values}
            ins = [(n, tuple(vals[v].shape[1:])) for n, v in plan.inputs if n.startswith(STATE_PREFIX)]
            outs = [n for n, _ in plan.outputs if n.startswith(STATE_PREFIX)]
            memo = plan.__dict__["_state_io"] = (ins, outs)
        return memo

    def _kept_states_in(self, plan, n: int) -> list:
        """The arrays the plan's stateful calls start this batch of ``n`` from: the states the
        last batch ended with, zeros at first and after ``reset_states()``."""
        import numpy as np

        ins, _ = self._state_io(plan)
        if not ins:
            return []
        batch = next((d.batch_size for d in self._typed.graph.inputs.values() if d.batch_size), None)
        if batch is not None and n != batch:
            layers = sorted({tn.node.layer for tn in self._typed.nodes.values() if tn.state_types})
            raise InputError(f"model '{self.name}' has stateful layers ({', '.join(layers) or 'in a sub-model'}), "
                             f"which keep states for batches of {batch} samples (the input's batch_size); got a "
                             f"batch of {n}: give batch_size={batch} and a sample count divisible by it")  # fmt: skip
        kept = self.__dict__.setdefault("_kept_states", {})
        out = []
        for name, shape in ins:
            a = kept.get(name)
            out.append(a if a is not None and a.shape[0] == n else np.zeros((n, *shape), np.float32))
        return out

    def _keep_states_out(self, plan, outs: list) -> list:
        """Keep the final states of the batch (the plan's last outputs); the other outputs."""
        _, names = self._state_io(plan)
        if not names:
            return outs
        kept = self.__dict__.setdefault("_kept_states", {})
        for name, a in zip(names, outs[len(outs) - len(names) :]):
            kept[name] = a.copy()
        return outs[: len(outs) - len(names)]

    def reset_states(self) -> None:
        """Zero the states of every stateful recurrent layer (Keras's ``layer.reset_state()``,
        for all of them): the next batch starts from zeros."""
        self.__dict__.pop("_kept_states", None)

    def _structured(self, outs: list):
        """The outputs as Keras returns them: a dict when the model's outputs are a mapping, else
        the one array, or the list."""
        keys = self._typed.graph.output_keys
        if keys is not None:
            return dict(zip(keys, outs))
        return outs[0] if len(outs) == 1 else outs

    def predict_on_batch(self, x):
        arrays = self._prepare_inputs(x)
        outs = self._run_batch(arrays)
        return self._structured(outs)

    def predict(self, x, batch_size: int | None = 32, verbose: int | str = 0, steps=None, callbacks=None):
        """Outputs for every sample of ``x``, computed ``batch_size`` samples at a time. ``x`` may
        also be an iterable or generator of batches (each ``x`` or a tuple ``(x, ...)``, as Keras
        takes them; ``steps`` batches at most), whose outputs are concatenated."""
        import itertools

        import numpy as np

        from .training import _is_batch_source

        if _is_batch_source(x):
            source = x if steps is None else itertools.islice(x, steps)
            chunks = [self._run_batch(self._prepare_inputs(b[0] if isinstance(b, tuple) else b)) for b in source]
            if not chunks:
                raise InputError("predict: the batch source gave no batches")
            outs = [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]
            return self._structured(outs)
        arrays = self._prepare_inputs(x)
        n = arrays[0].shape[0]
        bs = int(batch_size or 32)
        if bs < 1:
            raise ValueError(f"batch_size must be positive; got {batch_size}")
        if n <= bs:
            outs = self._run_batch(arrays)
        else:
            chunks = [self._run_batch([a[i : i + bs] for a in arrays]) for i in range(0, n, bs)]
            outs = [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]
        return self._structured(outs)


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
