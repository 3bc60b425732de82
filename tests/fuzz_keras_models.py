"""Random Keras models read into nnspec and compared with Keras: a correctness tool, run by hand.

    KERAS_BACKEND=torch python tests/fuzz_keras_models.py [FIRST_SEED] [COUNT]
    KERAS_BACKEND=torch python tests/fuzz_keras_models.py --train [FIRST_SEED] [COUNT]

Each seed builds a small random Keras model (layers, arguments and masks drawn from three menus:
images, sequences with and without masks, merges, 1-D and 3-D convolutions, preprocessing,
recurrent cells; convolution options, regularizers and constraints, reshaping), reads its ``to_json()`` with ``nnspec.model_from_json``, copies Keras's
weights, and compares predictions and one SGD step of mse (loss and weights after).

``--train`` compiles the same models with a random training setup (optimizer with its options,
clipping and a learning-rate schedule; a loss that fits the output activation, with its
arguments; metrics by Keras's names and class names; sample or class weights or a validation
split) through Keras's compile config, which the reader turns into the training section, and
compares two epochs of ``fit`` (the History), ``evaluate`` and the weights after.

A line per seed: ``ok``, ``BAD`` (relative differences above 1e-3), ``KNOWN`` (a BAD draw with
a documented difference: masked MultiHeadAttention rows reaching the loss through a
GlobalMaxPooling1D or a Flatten, docs/format.md's known issues; an adaptive optimizer stepping
on rounding noise where a weight's true gradient is 0, see ``_normalized_twice``) or ``ERR`` (an
exception, Keras's own included when the draw builds an invalid model or a top-k metric has
more k than classes). Layers that draw random numbers in training (Dropout, noise) are left
out, since their draws cannot match. This found the PReLU and activity-penalty bugs fixed on
2026-11-27, the training section's missing Keras class names (``"AUC"``) and the activation
layers' gradients at 0 (seed 20121); the pytest suite keeps fixed cases of what it finds.
"""

import os
import random
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np
from keras import layers as L

import nnspec

ACTS = [
    "relu",
    "tanh",
    "sigmoid",
    "elu",
    "selu",
    "softplus",
    "gelu",
    "swish",
    "linear",
    "softsign",
    "hard_sigmoid",
    "leaky_relu",
    "relu6",
    "mish",
    "silu",
    "exponential",
    "log_softmax",
    "softmax",
]


def image_stack(r, x):
    for _ in range(r.randint(1, 4)):
        k = r.choice(
            [
                "conv",
                "sep",
                "dw",
                "convT",
                "pool",
                "avg",
                "bn",
                "ln",
                "pad",
                "crop",
                "up",
                "drop",
                "prelu",
                "act",
            ]
        )
        H = x.shape[1]
        if k == "conv" and H >= 3:
            x = L.Conv2D(
                r.randint(1, 5),
                r.choice([1, 2, 3]),
                strides=r.choice([1, 1, 2]),
                padding=r.choice(["valid", "same"]),
                dilation_rate=1,
                activation=r.choice(ACTS[:12]),
                use_bias=r.random() < 0.8,
            )(x)
        elif k == "sep" and H >= 3:
            x = L.SeparableConv2D(
                r.randint(1, 4),
                3,
                padding=r.choice(["valid", "same"]),
                depth_multiplier=r.choice([1, 2]),
                activation=r.choice(ACTS[:6]),
            )(x)
        elif k == "dw" and H >= 3:
            x = L.DepthwiseConv2D(
                r.choice([2, 3]),
                strides=r.choice([1, 2]),
                padding=r.choice(["valid", "same"]),
                depth_multiplier=r.choice([1, 2]),
            )(x)
        elif k == "convT":
            x = L.Conv2DTranspose(
                r.randint(1, 3),
                r.choice([2, 3]),
                strides=r.choice([1, 2]),
                padding=r.choice(["valid", "same"]),
            )(x)
        elif k == "pool" and H >= 2:
            x = L.MaxPooling2D(
                r.choice([2, 3]) if H >= 3 else 2,
                strides=r.choice([None, 1, 2]),
                padding=r.choice(["valid", "same"]),
            )(x)
        elif k == "avg" and H >= 2:
            x = L.AveragePooling2D(2, padding=r.choice(["valid", "same"]))(x)
        elif k == "bn":
            x = L.BatchNormalization(
                momentum=r.choice([0.99, 0.9]),
                epsilon=r.choice([1e-3, 1e-5]),
                center=r.random() < 0.8,
                scale=r.random() < 0.8,
            )(x)
        elif k == "ln":
            x = L.LayerNormalization(axis=r.choice([-1, [1, 2, 3]]), center=r.random() < 0.8)(x)
        elif k == "pad":
            x = L.ZeroPadding2D(r.choice([1, (1, 2), ((0, 1), (2, 0))]))(x)
        elif k == "crop" and H >= 4:
            x = L.Cropping2D(1)(x)
        elif k == "up" and H <= 8:
            x = L.UpSampling2D(r.choice([2, (1, 2)]), interpolation=r.choice(["nearest", "bilinear"]))(x)
        elif k == "drop":
            x = L.Activation("linear")(x)
        elif k == "prelu":
            x = L.PReLU(shared_axes=r.choice([None, [1, 2]]))(x)
        elif k == "act":
            x = r.choice(
                [
                    L.ELU(alpha=0.5),
                    L.LeakyReLU(negative_slope=0.1),
                    L.ReLU(max_value=2.0, threshold=0.1),
                    L.Activation(r.choice(ACTS[:12])),
                ]
            )(x)
    return x


def seq_stack(r, x, masked):
    for _ in range(r.randint(1, 3)):
        k = r.choice(["lstm", "gru", "rnn", "bi", "conv1d", "td", "att", "mha", "ln", "dense", "init"])
        rs = True
        if k == "lstm":
            x = L.LSTM(
                r.randint(2, 6),
                return_sequences=rs,
                go_backwards=r.random() < 0.3,
                recurrent_activation=r.choice(["sigmoid", "hard_sigmoid"]),
                unit_forget_bias=r.random() < 0.7,
            )(x)
        elif k == "gru":
            x = L.GRU(
                r.randint(2, 6),
                return_sequences=rs,
                reset_after=r.random() < 0.6,
                go_backwards=r.random() < 0.3,
            )(x)
        elif k == "rnn":
            x = L.SimpleRNN(r.randint(2, 5), return_sequences=rs, activation=r.choice(["tanh", "relu"]))(x)
        elif k == "bi":
            x = L.Bidirectional(
                r.choice([L.LSTM, L.GRU])(r.randint(2, 4), return_sequences=rs),
                merge_mode=r.choice(["concat", "sum", "mul", "ave"]),
            )(x)
        elif k == "init":  # an encoder's final states start a decoder over the same sequence
            x = _encoder_decoder(r, x)
        elif k == "conv1d" and not masked:
            x = L.Conv1D(
                r.randint(2, 5),
                r.choice([1, 2, 3]),
                padding=r.choice(["valid", "same", "causal"]),
                dilation_rate=r.choice([1, 2]),
            )(x)
        elif k == "td":
            x = L.TimeDistributed(L.Dense(r.randint(2, 5), activation=r.choice(ACTS[:8])))(x)
        elif k == "att":
            x = L.Attention(use_scale=r.random() < 0.5, score_mode=r.choice(["dot", "concat"]))([x, x])
        elif k == "mha":
            x = L.MultiHeadAttention(num_heads=r.choice([1, 2]), key_dim=r.choice([2, 3]))(x, x)
        elif k == "ln":
            x = L.LayerNormalization()(x)
        elif k == "dense":
            x = L.Dense(r.randint(2, 6), activation=r.choice(ACTS))(x)
    return x


def _encoder_decoder(r, x):
    layer = r.choice([L.LSTM, L.GRU, L.SimpleRNN])
    cell = {L.LSTM: L.LSTMCell, L.GRU: L.GRUCell, L.SimpleRNN: L.SimpleRNNCell}[layer]
    u = r.randint(2, 4)
    if r.random() < 0.4:  # Bidirectional: its states, the forward layer's then the backward's
        _, *states = L.Bidirectional(layer(u, return_state=True), merge_mode=r.choice(["concat", "sum"]))(x)
        inner = layer(u, return_sequences=True) if r.random() < 0.7 else L.RNN(cell(u), return_sequences=True)
        return L.Bidirectional(inner, merge_mode=r.choice(["concat", "sum", "mul", "ave"]))(
            x, initial_state=states
        )
    _, *states = layer(u, return_state=True, go_backwards=r.random() < 0.3)(x)
    if r.random() < 0.3:
        return L.RNN(cell(u), return_sequences=True, go_backwards=r.random() < 0.3)(x, initial_state=states)
    return layer(u, return_sequences=True, go_backwards=r.random() < 0.3)(x, initial_state=states)


def make_a(seed):
    r = random.Random(seed)
    kind = r.choice(["image", "seq", "seqmask", "vec"])
    if kind == "image":
        inp = keras.Input((r.choice([6, 8, 9]), r.choice([6, 8, 7]), r.choice([1, 2, 3])))
        x = image_stack(r, inp)
        x = r.choice([L.Flatten(), L.GlobalAveragePooling2D(), L.GlobalMaxPooling2D()])(x)
        xin = np.random.default_rng(seed).normal(size=(4, *inp.shape[1:])).astype("f4")
    elif kind in ("seq", "seqmask"):
        if kind == "seqmask":
            inp = keras.Input((7,), dtype="int32")
            x = L.Embedding(12, r.randint(3, 6), mask_zero=True)(inp)
            ids = np.random.default_rng(seed).integers(1, 12, size=(4, 7)).astype("int32")
            ids[0, 4:] = 0
            ids[1, :2] = 0
            ids[2, 3] = 0
            xin = ids
        else:
            inp = keras.Input((7, r.randint(2, 5)))
            x = inp
            xin = np.random.default_rng(seed).normal(size=(4, *inp.shape[1:])).astype("f4")
        x = seq_stack(r, x, kind == "seqmask")
        last = r.choice(["gap", "gmp", "lstm", "flatten"])
        if last == "gap":
            x = L.GlobalAveragePooling1D()(x)
        elif last == "gmp":
            x = L.GlobalMaxPooling1D()(x)
        elif last == "lstm":
            x = L.LSTM(3)(x)
        else:
            x = L.Flatten()(x)
    else:
        inp = keras.Input((r.randint(3, 9),))
        x = inp
        for _ in range(r.randint(1, 3)):
            x = r.choice(
                [
                    lambda: L.Dense(
                        r.randint(2, 8),
                        activation=r.choice(ACTS),
                        kernel_initializer=r.choice(
                            ["glorot_uniform", "he_normal", "lecun_uniform", "orthogonal"]
                        ),
                    ),
                    lambda: L.BatchNormalization(),
                    lambda: L.UnitNormalization(),
                    lambda: L.ActivityRegularization(l1=0.01, l2=0.01),
                ]
            )()(x)
        xin = np.random.default_rng(seed).normal(size=(4, *inp.shape[1:])).astype("f4")
    out = L.Dense(3, activation=r.choice(["softmax", "linear", "sigmoid"]))(x)
    return keras.Model(inp, out), xin, kind


def make_b(seed):
    r = random.Random(seed)
    rng = np.random.default_rng(seed)
    kind = r.choice(["seqmaskf", "merge", "conv1d", "img3d", "misc", "rnncell"])
    if kind == "seqmaskf":
        inp = keras.Input((6, 3))
        x = L.Masking(mask_value=0.0)(inp)
        k = r.choice(["lstm", "gru", "convlstm", "bi_none", "add_att"])
        if k == "lstm":
            x = L.LSTM(4, return_sequences=r.random() < 0.5, go_backwards=r.random() < 0.5)(x)
        elif k == "gru":
            x = L.GRU(4, return_sequences=True, reset_after=r.random() < 0.5)(x)
            x = L.GlobalAveragePooling1D()(x)
        elif k == "convlstm":
            x = L.Reshape((6, 3, 1))(inp)
            x = L.ConvLSTM1D(2, 2, padding=r.choice(["same", "valid"]), return_sequences=r.random() < 0.5)(x)
            x = L.Flatten()(x)
        elif k == "bi_none":
            a, b = L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode=None)(x)
            x = L.GlobalMaxPooling1D()(L.Concatenate()([a, b]))
        else:
            x = L.AdditiveAttention(use_scale=r.random() < 0.5)([x, x])
            x = L.GlobalAveragePooling1D()(x)
        if len(x.shape) == 3:
            x = L.Flatten()(x)
        xin = rng.normal(size=(4, 6, 3)).astype("f4")
        xin[0, 4:] = 0
        xin[1, :2] = 0
    elif kind == "merge":
        a = keras.Input((5,))
        b = keras.Input((5,))
        ha = L.Dense(4, activation=r.choice(ACTS[:10]))(a)
        hb = L.Dense(4, activation=r.choice(ACTS[:10]))(b)
        m = r.choice(
            [
                L.Add(),
                L.Subtract(),
                L.Multiply(),
                L.Average(),
                L.Maximum(),
                L.Minimum(),
                L.Concatenate(),
                L.Dot(axes=1, normalize=r.random() < 0.5),
            ]
        )
        x = m([ha, hb])
        if r.random() < 0.5:
            x = L.RepeatVector(3)(x)
            x = L.Permute((2, 1))(x)
            x = L.Reshape((-1,))(x)
        inp = [a, b]
        xin = [rng.normal(size=(4, 5)).astype("f4") for _ in range(2)]
    elif kind == "conv1d":
        inp = keras.Input((12, 4))
        x = inp
        for _ in range(r.randint(1, 3)):
            k = r.choice(["conv", "pool", "avg", "up", "pad", "crop", "sep", "dw", "convT", "gn", "rms"])
            if k == "conv":
                x = L.Conv1D(
                    r.choice([2, 4]),
                    r.choice([1, 2, 3]),
                    strides=r.choice([1, 2]),
                    padding=r.choice(["valid", "same", "causal"]),
                    groups=r.choice([1, 2]) if x.shape[-1] % 2 == 0 else 1,
                )(x)
            elif k == "pool" and x.shape[1] >= 2:
                x = L.MaxPooling1D(2, padding=r.choice(["valid", "same"]))(x)
            elif k == "avg" and x.shape[1] >= 3:
                x = L.AveragePooling1D(3, strides=1, padding=r.choice(["valid", "same"]))(x)
            elif k == "up":
                x = L.UpSampling1D(2)(x)
            elif k == "pad":
                x = L.ZeroPadding1D((1, 2))(x)
            elif k == "crop" and x.shape[1] >= 4:
                x = L.Cropping1D((1, 1))(x)
            elif k == "sep" and x.shape[1] >= 3:
                x = L.SeparableConv1D(3, 3, padding="same")(x)
            elif k == "dw" and x.shape[1] >= 3:
                x = L.DepthwiseConv1D(3, depth_multiplier=2)(x)
            elif k == "convT":
                x = L.Conv1DTranspose(2, 3, strides=r.choice([1, 2]), padding=r.choice(["valid", "same"]))(x)
            elif k == "gn" and x.shape[-1] % 2 == 0:
                x = L.GroupNormalization(groups=2)(x)
            elif k == "rms":
                x = L.RMSNormalization()(x)
        x = r.choice([L.GlobalAveragePooling1D(), L.GlobalMaxPooling1D(), L.Flatten()])(x)
        xin = rng.normal(size=(4, 12, 4)).astype("f4")
    elif kind == "img3d":
        inp = keras.Input((5, 5, 5, 2))
        x = inp
        k = r.choice(["conv", "pool", "up", "convT", "avg"])
        if k == "conv":
            x = L.Conv3D(2, 2, padding=r.choice(["valid", "same"]))(x)
        elif k == "pool":
            x = L.MaxPooling3D(2)(x)
        elif k == "up":
            x = L.UpSampling3D(2)(x)
        elif k == "convT":
            x = L.Conv3DTranspose(2, 2, strides=2)(x)
        else:
            x = L.AveragePooling3D(2, padding="same")(x)
        x = r.choice([L.GlobalAveragePooling3D(), L.GlobalMaxPooling3D(), L.Flatten()])(x)
        xin = rng.normal(size=(4, 5, 5, 5, 2)).astype("f4")
    elif kind == "misc":
        inp = keras.Input((8, 8, 3))
        x = inp
        k = r.choice(["resc", "resize", "center", "softmax", "einsum", "spectral", "td_conv", "adapt"])
        if k == "resc":
            x = L.Rescaling(1 / 2.0, offset=0.5)(x)
            x = L.Conv2D(2, 3)(x)
        elif k == "resize":
            x = L.Resizing(
                5,
                6,
                interpolation=r.choice(["bilinear", "nearest", "bicubic"]),
                crop_to_aspect_ratio=r.random() < 0.5,
            )(x)
        elif k == "center":
            x = L.CenterCrop(5, 4)(x)
        elif k == "softmax":
            x = L.Softmax(axis=r.choice([-1, 1]))(x)
        elif k == "einsum":
            x = L.Reshape((8, 24))(x)
            x = L.EinsumDense("abc,cd->abd", output_shape=(None, 5), bias_axes="d")(x)
        elif k == "spectral":
            x = L.Flatten()(x)
            x = L.SpectralNormalization(L.Dense(4))(x)
        elif k == "td_conv":
            x = L.TimeDistributed(L.Conv1D(2, 3))(x)
        else:
            x = L.AdaptiveAveragePooling2D((2, 3))(x) if hasattr(L, "AdaptiveAveragePooling2D") else x
        x = L.Flatten()(x)
        xin = rng.normal(size=(4, 8, 8, 3)).astype("f4")
    else:
        inp = keras.Input((5, 3))
        x = inp
        cell = r.choice(
            [
                lambda: L.LSTMCell(3),
                lambda: L.GRUCell(3, reset_after=r.random() < 0.5),
                lambda: L.SimpleRNNCell(3),
            ]
        )
        if r.random() < 0.5:
            x = L.RNN(cell(), return_sequences=r.random() < 0.5, go_backwards=r.random() < 0.5)(x)
        else:
            x = L.RNN([cell(), cell()])(x)
        if len(x.shape) == 3:
            x = L.Flatten()(x)
        xin = rng.normal(size=(4, 5, 3)).astype("f4")
    out = L.Dense(3, activation=r.choice(["softmax", "linear", "sigmoid"]))(x)
    return keras.Model(inp, out), xin, kind


def run(seed):
    km, x, kind = make(seed)
    m = nnspec.model_from_json(km.to_json())
    assert m.count_params() == km.count_params(), (m.count_params(), km.count_params())
    m.set_weights(km.get_weights())
    want = np.asarray(km.predict(x, verbose=0))
    got = m.predict(x)
    d1 = _weight_rel(got, want, 1e-3)
    y = np.random.default_rng(seed + 1).uniform(size=want.shape).astype("f4")
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    m.compile(optimizer=nnspec.optimizers.SGD(learning_rate=0.1), loss="mse")
    lk = float(np.ravel(km.train_on_batch(x, y))[0])
    ln = float(np.ravel(m.train_on_batch(x, y))[0])
    wd = max(
        (_weight_rel(a, b, 1e-3) for a, b in zip(m.get_weights(), km.get_weights()) if a.size),
        default=0,
    )
    return kind, d1, abs(lk - ln) / (abs(lk) + 1e-6), wd, [l.__class__.__name__ for l in km.layers]


def regularized(r):
    """Keyword arguments with random weight regularizers and constraints (or none)."""
    kw = {}
    if r.random() < 0.5:
        kw["kernel_regularizer"] = r.choice(
            [keras.regularizers.L1(0.01), keras.regularizers.L2(0.02), keras.regularizers.L1L2(0.01, 0.01)]
        )
    if r.random() < 0.3:
        kw["bias_regularizer"] = keras.regularizers.L2(0.05)
    if r.random() < 0.3:
        kw["activity_regularizer"] = keras.regularizers.L1(0.01)
    if r.random() < 0.4:
        kw["kernel_constraint"] = r.choice(
            [
                keras.constraints.MaxNorm(0.5),
                keras.constraints.NonNeg(),
                keras.constraints.UnitNorm(),
                keras.constraints.MinMaxNorm(0.2, 0.6, rate=0.5),
            ]
        )
    if r.random() < 0.2:
        kw["bias_constraint"] = keras.constraints.NonNeg()
    return kw


def make_c(seed):
    """The third menu: convolution options, regularizers and constraints, more recurrent and
    reshaping layers, 3-D volumes."""
    r = random.Random(seed)
    rng = np.random.default_rng(seed)
    kind = r.choice(["conv2d", "regs", "seq", "vol", "shapes"])
    if kind == "conv2d":
        inp = keras.Input((9, 8, 4))
        x = inp
        for _ in range(r.randint(1, 3)):
            k = r.choice(["dil", "groups", "strides", "convT", "sep", "dw", "crop", "pool", "avg"])
            H, W = x.shape[1], x.shape[2]
            if k == "dil" and min(H, W) >= 5:
                x = L.Conv2D(3, 3, dilation_rate=r.choice([2, (2, 1)]), padding=r.choice(["valid", "same"]))(
                    x
                )
            elif k == "groups" and x.shape[-1] % 2 == 0:
                x = L.Conv2D(4, r.choice([1, 3]), groups=2, padding="same", use_bias=r.random() < 0.5)(x)
            elif k == "strides" and min(H, W) >= 3:
                x = L.Conv2D(
                    2, (3, 2), strides=r.choice([(2, 1), (1, 2), 3]), padding=r.choice(["valid", "same"])
                )(x)
            elif k == "convT":
                x = L.Conv2DTranspose(
                    2,
                    3,
                    strides=2,
                    padding=r.choice(["valid", "same"]),
                    output_padding=r.choice([None, 1]),
                )(x)
            elif k == "sep" and min(H, W) >= 3:
                x = L.SeparableConv2D(3, 3, strides=r.choice([1, 2]), depth_multiplier=r.choice([1, 3]))(x)
            elif k == "dw" and min(H, W) >= 5:
                x = L.DepthwiseConv2D(3, dilation_rate=2, padding=r.choice(["valid", "same"]))(x)
            elif k == "crop" and min(H, W) >= 5:
                x = L.Cropping2D(((1, 0), (0, 2)))(x)
            elif k == "pool" and min(H, W) >= 3:
                x = L.MaxPooling2D(
                    (3, 2), strides=r.choice([None, (1, 2)]), padding=r.choice(["valid", "same"])
                )(x)
            elif k == "avg" and min(H, W) >= 2:
                x = L.AveragePooling2D((2, 2), strides=1, padding=r.choice(["valid", "same"]))(x)
        x = r.choice([L.Flatten(), L.GlobalAveragePooling2D(), L.GlobalMaxPooling2D(keepdims=False)])(x)
        xin = rng.normal(size=(4, 9, 8, 4)).astype("f4")
    elif kind == "regs":
        inp = keras.Input((6, 6, 2)) if r.random() < 0.4 else keras.Input((7,))
        x = inp
        if len(inp.shape) == 4:
            x = L.Conv2D(3, 3, **regularized(r))(x)
            if r.random() < 0.5:
                x = L.SeparableConv2D(2, 2, depthwise_regularizer=keras.regularizers.L2(0.1))(x)
            x = L.Flatten()(x)
        for _ in range(r.randint(1, 2)):
            x = L.Dense(r.randint(2, 5), activation=r.choice(ACTS[:8]), **regularized(r))(x)
        xin = rng.normal(size=(4, *inp.shape[1:])).astype("f4")
    elif kind == "seq":
        masked = r.random() < 0.6
        if masked:
            inp = keras.Input((6,), dtype="int32")
            x = L.Embedding(
                9, 4, mask_zero=True, embeddings_regularizer=r.choice([None, keras.regularizers.L2(0.01)])
            )(inp)
            ids = rng.integers(1, 9, size=(4, 6)).astype("int32")
            ids[0, 3:] = 0
            ids[1, :1] = 0
            xin = ids
        else:
            inp = keras.Input((6, 3))
            x = inp
            xin = rng.normal(size=(4, 6, 3)).astype("f4")
        for _ in range(r.randint(1, 2)):
            k = r.choice(["lstm", "gru", "rnn", "bi", "td", "conv1d", "gap", "repeat"])
            if k == "lstm":
                x = L.LSTM(
                    3,
                    return_sequences=True,
                    use_bias=r.random() < 0.7,
                    activation=r.choice(["tanh", "relu", "sigmoid"]),
                    recurrent_activation=r.choice(["sigmoid", "hard_sigmoid", "tanh"]),
                    **regularized(r),
                )(x)
            elif k == "gru":
                x = L.GRU(3, return_sequences=True, reset_after=r.random() < 0.5, use_bias=r.random() < 0.7)(
                    x
                )
            elif k == "rnn":
                x = L.SimpleRNN(3, return_sequences=True, go_backwards=r.random() < 0.5)(x)
            elif k == "bi":
                x = L.Bidirectional(
                    L.SimpleRNN(2, return_sequences=True), merge_mode=r.choice(["concat", "sum"])
                )(x)
            elif k == "td":
                x = L.TimeDistributed(L.Dense(3, **regularized(r)))(x)
            elif k == "conv1d" and not masked:
                x = L.Conv1D(3, 2, dilation_rate=2, padding="causal", **regularized(r))(x)
            elif k == "gap":
                x = L.Dense(3)(x)
            elif k == "repeat" and not masked:
                x = L.Flatten()(x)
                x = L.RepeatVector(2)(x)
        x = r.choice([L.GlobalAveragePooling1D(), L.LSTM(2), L.GRU(2), L.SimpleRNN(2)])(x)
    elif kind == "vol":
        inp = keras.Input((4, 6, 6, 2))
        x = inp
        k = r.choice(["convlstm", "conv3d", "crop", "pad", "up", "convlstm_init"])
        if k == "convlstm":
            x = L.ConvLSTM2D(2, 3, padding=r.choice(["valid", "same"]), return_sequences=r.random() < 0.5)(x)
        elif k == "convlstm_init":  # an encoder's h, c start a decoder (or a Bidirectional's four)
            pad = r.choice(["valid", "same"])
            if r.random() < 0.5:
                _, *states = L.ConvLSTM2D(
                    2, 3, padding=pad, return_state=True, go_backwards=r.random() < 0.3
                )(x)
                x = L.ConvLSTM2D(2, 3, padding=pad, return_sequences=r.random() < 0.5)(
                    x, initial_state=states
                )
            else:
                _, *states = L.Bidirectional(L.ConvLSTM2D(2, 3, padding=pad, return_state=True))(x)
                dec = L.ConvLSTM2D(2, 3, padding=pad, return_sequences=True)
                x = L.Bidirectional(dec, merge_mode=r.choice(["concat", "sum", "mul"]))(
                    x, initial_state=states
                )
        elif k == "conv3d":
            x = L.Conv3D(2, (2, 3, 3), strides=(1, 2, 2), padding=r.choice(["valid", "same"]))(x)
        elif k == "crop":
            x = L.Cropping3D(((1, 0), (1, 1), (0, 2)))(x)
        elif k == "pad":
            x = L.ZeroPadding3D((0, 1, 2))(x)
        else:
            x = L.UpSampling3D((1, 2, 1))(x)
        x = L.Flatten()(x)
        xin = rng.normal(size=(4, 4, 6, 6, 2)).astype("f4")
    else:
        inp = keras.Input((4, 6))
        x = inp
        k = r.choice(["permute", "reshape", "concat", "dot", "minmax"])
        if k == "permute":
            x = L.Permute((2, 1))(x)
            x = L.Dense(3)(x)
        elif k == "reshape":
            x = L.Reshape((3, 8))(x)
            x = L.Conv1D(2, 2)(x)
        elif k == "concat":
            a = L.Dense(2)(x)
            x = L.Concatenate(axis=r.choice([1, -1]))([x if r.random() < 0.5 else L.Dense(2)(x), a])
        elif k == "dot":
            a = L.Dense(6)(x)
            x = L.Dot(axes=r.choice([(2, 2), (1, 1)]), normalize=r.random() < 0.5)([x, a])
        else:
            a = L.Dense(6)(x)
            x = r.choice([L.Minimum(), L.Maximum(), L.Average(), L.Subtract()])([x, a])
        x = L.Flatten()(x)
        xin = rng.normal(size=(4, 4, 6)).astype("f4")
    out = L.Dense(3, activation=r.choice(["softmax", "linear", "sigmoid"]))(x)
    return keras.Model(inp, out), xin, kind


def known_difference(km, kind) -> bool:
    """The documented Keras-on-torch difference: masked MultiHeadAttention rows reaching the loss
    through a layer that ignores the mask (docs/format.md, known issues)."""
    names = {layer.__class__.__name__ for layer in km.layers}
    masked = kind in ("seqmask", "seqmaskf")
    return masked and "MultiHeadAttention" in names and bool(names & {"GlobalMaxPooling1D", "Flatten"})


def make(seed):
    return (make_a, make_b, make_c)[seed % 3](seed)


def main(first: int, count: int) -> int:
    bad = 0
    for seed in range(first, first + count):
        try:
            kind, d, dl, dw, names = run(seed)
            flag = "BAD" if (d > 1e-3 or dl > 1e-3 or dw > 1e-3) else "ok"
            flag = "KNOWN" if flag == "BAD" and known_difference(make(seed)[0], kind) else flag
            bad += flag == "BAD"
            print(seed, flag, kind, f"pred {d:.1e} loss {dl:.1e} weights {dw:.1e}", names[1:], flush=True)
        except Exception as e:  # noqa: BLE001 - a tool: report and go on
            print(seed, "ERR", type(e).__name__, str(e)[:300].replace("\n", " "), flush=True)
    return bad


# ---- training fuzz: random optimizers, losses, metrics and fit arguments ----------------------

OPTIMIZERS = {
    "SGD": lambda r: {"momentum": r.choice([0.0, 0.9]), "nesterov": r.random() < 0.4},
    "RMSprop": lambda r: {
        "rho": r.choice([0.9, 0.8]),
        "momentum": r.choice([0.0, 0.5]),
        "centered": r.random() < 0.4,
    },
    "Adam": lambda r: {"amsgrad": r.random() < 0.4, "beta_1": r.choice([0.9, 0.8])},
    "AdamW": lambda r: {"weight_decay": r.choice([0.004, 0.1]), "amsgrad": r.random() < 0.3},
    "Adagrad": lambda r: {"initial_accumulator_value": r.choice([0.1, 0.5])},
    "Adadelta": lambda r: {"rho": r.choice([0.95, 0.9])},
    "Adamax": lambda r: {},
    "Nadam": lambda r: {},
    "Lion": lambda r: {"beta_1": r.choice([0.9, 0.95])},
    "Ftrl": lambda r: {
        "l1_regularization_strength": r.choice([0.0, 0.01]),
        "l2_regularization_strength": r.choice([0.0, 0.01]),
        "beta": r.choice([0.0, 0.1]),
    },
    "Lamb": lambda r: {"beta_2": r.choice([0.999, 0.99])},
    "Adafactor": lambda r: {"clip_threshold": r.choice([1.0, 0.5])},
}

LOSSES_BY_ACT = {
    "softmax": [
        ("CategoricalCrossentropy", {"label_smoothing": 0.1}, "onehot"),
        ("CategoricalCrossentropy", {}, "onehot"),
        ("SparseCategoricalCrossentropy", {}, "sparse"),
        ("KLDivergence", {}, "prob"),
        ("CategoricalHinge", {}, "onehot"),
        ("Poisson", {}, "prob"),
        ("MeanSquaredError", {}, "prob"),
        ("CosineSimilarity", {}, "prob"),
        ("CategoricalFocalCrossentropy", {"gamma": 1.5}, "onehot"),
    ],
    "sigmoid": [
        ("BinaryCrossentropy", {}, "binary"),
        ("BinaryCrossentropy", {"label_smoothing": 0.2}, "binary"),
        ("MeanAbsoluteError", {}, "prob"),
        ("Hinge", {}, "binary"),
        ("SquaredHinge", {}, "binary"),
        ("MeanSquaredLogarithmicError", {}, "prob"),
        ("BinaryFocalCrossentropy", {"apply_class_balancing": True, "alpha": 0.4}, "binary"),
    ],
    "linear": [
        ("CategoricalCrossentropy", {"from_logits": True}, "onehot"),
        ("SparseCategoricalCrossentropy", {"from_logits": True}, "sparse"),
        ("BinaryCrossentropy", {"from_logits": True}, "binary"),
        ("Huber", {"delta": 0.5}, "real"),
        ("LogCosh", {}, "real"),
        ("MeanAbsolutePercentageError", {}, "away"),
        ("MeanSquaredError", {}, "real"),
        ("BinaryFocalCrossentropy", {"from_logits": True}, "binary"),
        ("CategoricalFocalCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "onehot"),
    ],
}

METRICS = {
    "onehot": [
        "accuracy",
        "categorical_accuracy",
        "top_k_categorical_accuracy",
        "mse",
        "AUC",
        "Precision",
        "Recall",
        "f1_score",
        "cosine_similarity",
        "RootMeanSquaredError",
    ],
    "sparse": ["accuracy", "sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy"],
    "binary": ["accuracy", "binary_accuracy", "mae", "AUC", "Precision", "Recall", "F1Score"],
    "prob": ["mse", "mae", "kl_divergence", "poisson", "log_cosh_error", "r2_score", "pearson_correlation"],
    "real": ["mse", "mae", "mape", "root_mean_squared_error", "R2Score", "concordance_correlation"],
    "away": ["mse", "mae"],
}


def labels(r, rng, kind, n, k):
    if kind == "onehot":
        return np.eye(k, dtype="f4")[rng.integers(0, k, n)]
    if kind == "sparse":
        return rng.integers(0, k, (n, 1)).astype("int32")
    if kind == "binary":
        return rng.integers(0, 2, (n, k)).astype("f4")
    if kind == "prob":
        p = rng.uniform(0.05, 1, (n, k)).astype("f4")
        return (p / p.sum(1, keepdims=True)).astype("f4")
    if kind == "away":
        return (rng.choice([-1, 1], (n, k)) * rng.uniform(0.5, 2, (n, k))).astype("f4")
    return rng.normal(size=(n, k)).astype("f4")


def training_setup(r):
    name = r.choice(sorted(OPTIMIZERS))
    kw = OPTIMIZERS[name](r)
    kw["learning_rate"] = r.choice([0.01, 0.05])
    clip = r.choice([None, None, "clipnorm", "clipvalue", "global_clipnorm"])
    if clip:
        kw[clip] = 0.1
    sched = None
    if r.random() < 0.25:
        sched = r.choice(
            [
                ("ExponentialDecay", {"initial_learning_rate": 0.05, "decay_steps": 2, "decay_rate": 0.5}),
                ("CosineDecay", {"initial_learning_rate": 0.05, "decay_steps": 5}),
                ("PiecewiseConstantDecay", {"boundaries": [2], "values": [0.05, 0.01]}),
                (
                    "PolynomialDecay",
                    {"initial_learning_rate": 0.05, "decay_steps": 3, "power": 2.0, "cycle": True},
                ),
                ("InverseTimeDecay", {"initial_learning_rate": 0.05, "decay_steps": 2, "decay_rate": 0.5}),
                ("CosineDecayRestarts", {"initial_learning_rate": 0.05, "first_decay_steps": 2}),
            ]
        )
    return name, kw, sched


def make_training(seed):
    km, x, kind = make(seed)
    r = random.Random(seed * 7 + 1)
    rng = np.random.default_rng(seed + 2)
    act = km.layers[-1].get_config()["activation"]
    loss, lkw, lab = r.choice(LOSSES_BY_ACT[act])
    mets = r.sample(METRICS[lab], r.randint(0, 2))
    return km, x, kind, r, rng, (loss, lkw, lab), mets


def _rel(a, b) -> float:
    """The largest difference relative to Keras's value ``a`` (a metric may give one per class);
    NaN where both are NaN counts as equal (Ftrl with a cosine decay to 0 diverges in both, seed
    50088), NaN on one side only as a difference."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isnan(a) & np.isnan(b)
    return float(np.max(np.where(both, 0.0, np.abs(a - b) / (np.abs(a) + 1e-3)), initial=0.0))


def _weight_rel(ours, keras_w, floor: float = 1e-2) -> float:
    """The largest difference of an array relative to Keras's (``floor`` added to its size):
    equal NaNs count as equal, a NaN on one side only as infinitely different (``max`` would pass
    a bare NaN)."""
    a, b = np.asarray(ours, np.float64), np.asarray(keras_w, np.float64)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if (nan_a != nan_b).any():
        return float("inf")
    return float(np.max(np.where(nan_a, 0.0, np.abs(a - b) / (np.abs(b) + floor)), initial=0.0))


def train_run(seed):
    km, x, kind, r, rng, (loss, lkw, lab), mets = make_training(seed)
    xs = x if isinstance(x, list) else [x]
    n = 10
    xs = [np.concatenate([a, a[::-1], a[:2]]) for a in xs]
    x = xs if len(xs) > 1 else xs[0]
    y = labels(r, rng, lab, n, 3)
    oname, okw, sched = training_setup(r)

    def optimizer(mod):
        kw = dict(okw)
        if sched:
            kw["learning_rate"] = getattr(mod.optimizers.schedules, sched[0])(**sched[1])
        return getattr(mod.optimizers, oname)(**kw)

    fit = {"batch_size": r.choice([3, 4, 10]), "epochs": 2, "shuffle": False, "verbose": 0}
    w = r.choice([None, "sample", "class", "val"])
    if w == "sample":
        fit["sample_weight"] = rng.uniform(0.2, 2, n).astype("f4")
    elif w == "class" and lab in ("sparse", "onehot"):
        fit["class_weight"] = {0: 0.5, 1: 2.0, 2: 1.0}
    elif w == "val":
        fit["validation_split"] = 0.3
    km.compile(optimizer=optimizer(keras), loss=getattr(keras.losses, loss)(**lkw), metrics=list(mets))
    m = nnspec.model_from_json(km.to_json())
    m.set_weights(km.get_weights())
    # the training section read from Keras's compile config; not for Huber, whose get_config
    # leaves out delta (Keras 3.15: its own from_config of the model resets delta to 1.0)
    from_section = r.random() < 0.5 and loss != "Huber"
    if from_section:
        m.compile()
    else:
        m.compile(optimizer=optimizer(nnspec), loss={"type": loss, **lkw}, metrics=list(mets))
    hk = km.fit(x, y, **fit).history
    hn = m.fit(x, y, **fit).history
    diffs = {}
    for key, vals in hk.items():
        if key not in hn:
            diffs[key] = "missing"
            continue
        diffs[key] = max(_rel(a, b) for a, b in zip(vals, hn[key]))
    extra = sorted(set(hn) - set(hk))
    # 1e-2 in the denominator: an adaptive optimizer turns gradients at rounding level into
    # updates of ~1e-6 that differ. Attention's key bias is left out: its true gradient is 0
    # (softmax does not change when every score moves by q.b), so Adam-like optimizers move it
    # by rounding noise alone, differently in each framework.
    wd = max(
        (
            _weight_rel(a, b)
            for a, b, v in zip(m.get_weights(), km.get_weights(), km.weights)
            if a.size and not v.path.endswith("key/bias")
        ),
        default=0,
    )
    ek = km.evaluate(x, y, verbose=0, return_dict=True)
    en = m.evaluate(x, y, verbose=0, return_dict=True)
    for key, v in ek.items():
        diffs["eval_" + key] = _rel(v, en.get(key, np.nan))
    desc = f"{oname}{okw}{'+' + sched[0] if sched else ''} {loss}{lkw} {mets} {w} bs{fit['batch_size']}{' section' if from_section else ''}"
    known = known_difference(km, kind) or (oname != "SGD" and _normalized_twice(km))
    return kind, diffs, extra, wd, desc, known


def _normalized_twice(km) -> bool:
    """A BatchNormalization reading another's output: the first one's beta has a true gradient of
    0 (the second removes any shift), and an adaptive optimizer normalizes what rounding leaves
    there into steps of about lr, different in each framework (Lion by its sign, seed 30078;
    Adam, seed 50046). Plain SGD moves it by rounding noise times lr, below the tolerance."""
    bn = keras.layers.BatchNormalization
    return any(isinstance(layer, bn) and isinstance(layer.input._keras_history[0], bn) for layer in km.layers)


def main_train(first: int, count: int) -> int:
    bad = 0
    for seed in range(first, first + count):
        try:
            kind, diffs, extra, wd, desc, known = train_run(seed)
            worst = {k: v for k, v in diffs.items() if v == "missing" or not (v <= 1e-3)}
            flag = "BAD" if (worst or extra or wd > 1e-3) else "ok"
            flag = "KNOWN" if flag == "BAD" and known else flag
            bad += flag == "BAD"
            print(seed, flag, kind, desc, f"weights {wd:.1e}", worst or "", extra or "", flush=True)
        except Exception as e:  # noqa: BLE001 - a tool: report and go on
            print(seed, "ERR", type(e).__name__, str(e)[:300].replace("\n", " "), flush=True)
    return bad


if __name__ == "__main__":
    train = "--train" in sys.argv
    args = [int(a) for a in sys.argv[1:] if a != "--train"][:2]
    sys.exit(1 if (main_train if train else main)(*(args + [0, 40][len(args) :])) else 0)
