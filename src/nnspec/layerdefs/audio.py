"""Audio layers: STFTSpectrogram and MelSpectrogram, as Keras 3 (3.15, PyTorch backend) computes them.

Both were checked against Keras's source (``layers/preprocessing/stft_spectrogram.py``,
``mel_spectrogram.py``, ``initializers.STFT``, ``backend/torch/math.py: stft``) and by running it.

STFTSpectrogram(mode, frame_length, frame_step, fft_length, window, periodic, scaling, padding,
expand_dims, data_format). Keras runs a 1-D convolution of each input channel (alone) with two
kernels of shape ``(frame_length, 1, fft_length // 2 + 1)``: ``real_kernel`` (weight order
first; absent in mode ``imag``) and ``imag_kernel`` (absent in mode ``real``). They are ordinary
weights, trainable unless the layer's ``trainable`` is false (Keras counts the default layer's
66,048 parameters as trainable). Their initial values (``initializers.STFT``), computed in
float32: with ``B = fft_length // 2 + 1``, ``N = 2 (B - 1)`` (so an odd ``fft_length`` uses
``fft_length - 1``), ``arg[t, k] = (-2 t) * (k / N) * pi``, the real kernel is ``cos(arg)`` and
the imaginary one ``sin(arg)``, times the window ``w`` (scipy's ``get_window(window,
frame_length, fftbins=periodic)``, or the given array, or none) divided by ``sqrt(sum w^2)``
(scaling ``density``), ``sum |w|`` (``spectrum``) or 1 (None, or no window). The strided
convolution (stride ``frame_step``, default ``frame_length // 2``; padding ``same`` puts the odd
zero after, as Keras's torch convolution) gives ``re`` and ``im`` per channel, frame and bin;
then ``real``: re; ``imag``: im; ``stft``: re then im along the bins; ``angle``: atan2(im, re);
``psd``: ``re^2 + im^2`` with every bin but the first and last doubled; ``magnitude``:
``sqrt(max(re^2 + im^2, 1e-7))``; ``log``: ``log(max(magnitude, 1e-7))``. Output layouts:
channels_last ``(T, C * B)`` (channel-major) or ``(T, B, C)`` with ``expand_dims``;
channels_first ``(C * B, T)`` or ``(C, T, B)``. Keras refuses a ``frame_step`` above
``frame_length``, an ``fft_length`` below it, an unknown mode, scaling, padding or window name,
and a window array of another length: here schema or shape errors.

MelSpectrogram(fft_length, sequence_stride, sequence_length, window, sampling_rate,
num_mel_bins, min_freq, max_freq, power_to_db, top_db, mag_exp, min_power, ref_power): no
weights; input ``(batch, samples)``, output ``(batch, num_mel_bins, frames)``. Keras calls
``torch.stft`` with ``center=True``: the signal is reflect-padded by ``fft_length // 2`` on both
sides (so it needs more than ``fft_length // 2`` samples: a shape error here, a runtime error in
Keras), a periodic ``hann`` or ``hamming`` window of ``sequence_length`` (default
``fft_length``; no window: ones; an array is used as given) is centered in ``fft_length``,
``frames = 1 + (samples + 2 (fft_length // 2) - fft_length) // sequence_stride``. Then
``|X| ** mag_exp`` per frame and bin, times the HTK mel filterbank
(``linear_to_mel_weight_matrix``: triangles between ``min_freq`` and ``max_freq``, default
``sampling_rate / 2`` truncated to an int, on ``1127 log(1 + f / 700)``; the DC bin has weight
0), and with ``power_to_db``: ``10 log10(max(S, min_power)) - 10 log10(max(|ref_power|,
min_power))``, clipped from below at ``max - top_db`` where the max is over the WHOLE batch
(``ops.max`` with no axis: one sample's output depends on the others in its batch; so does
Keras's ``predict``, per batch of 32). Keras refuses ``fft_length < sequence_length`` and window
names other than ``hann``/``hamming``.

Kernels. STFTSpectrogram gathers each channel's frames into a (frames, frame_length) matrix and
multiplies it with the kernels (BLAS). MelSpectrogram builds its windowed cos/sin matrices from
a table of ``fft_length`` twiddles and the mel matrix on each call (a few milliseconds for
``fft_length`` 2048), then does the same products. Backward passes recompute the forward.

Differences from Keras (nonsmooth points and corners):

- MelSpectrogram's gradient at a frame and bin with ``|X| = 0`` (a silent stretch of signal) is
  0 here; PyTorch's autograd gives NaN there (sqrt at 0). At the other nonsmooth points nnspec
  does what PyTorch does: ``angle`` at ``re = im = 0`` has gradient 0, ``max(p, eps)`` at a tie
  passes half the gradient to each side, a clipped dB value passes its gradient to the batch's
  maximum (split evenly among tied maxima), and ``log`` / ``magnitude`` below the ``1e-7``
  floor get no gradient.
- Window names: the scipy windows without parameters that nnspec implements (hann, hamming,
  blackman, blackmanharris, nuttall, flattop, boxcar, bartlett, triang, cosine, bohman,
  barthann, parzen, with scipy's aliases and ``_periodic``/``_symmetric`` suffixes); Keras also
  takes lanczos, exponential, taylor and tukey with their default parameters: refused here.
- STFTSpectrogram's input needs a known channel count; MelSpectrogram takes rank 2 only (Keras's
  ``ops.stft`` also flattens extra leading axes).
- MelSpectrogram's symbolic shape in Keras says ``(samples + stride + 1) // stride`` frames;
  nnspec gives the number of frames Keras computes (they differ when ``samples % stride`` is
  ``stride - 1``), as for other layers (docs/design.md, 20).
"""

from __future__ import annotations

import math

from .base import COMMON_ATTRS, Attr, LayerDef, ParamSpec, ShapeError, TensorType, fmt_shape, require_rank
from .conv import same_pad_before
from .core import DATA_FORMAT_ATTR

np = None  # NumPy, bound by base.bind_numpy when kernels are needed

KERNEL_HELPERS = ("_stft_frames", "_mel_tables", "_reflect", "_mel_frames", "_mel_power")

# ----------------------------------------------------------------------------- windows

# scipy.signal.get_window's names (and aliases) of the windows without parameters nnspec has.
_WINDOW_ALIASES = {
    "hann": "hann", "han": "hann",
    "hamming": "hamming", "hamm": "hamming", "ham": "hamming",
    "blackman": "blackman", "black": "blackman", "blk": "blackman",
    "blackmanharris": "blackmanharris", "blackharr": "blackmanharris", "bkh": "blackmanharris",
    "nuttall": "nuttall", "nutl": "nuttall", "nut": "nuttall",
    "flattop": "flattop", "flat": "flattop", "flt": "flattop",
    "boxcar": "boxcar", "box": "boxcar", "ones": "boxcar", "rect": "boxcar", "rectangular": "boxcar",
    "bartlett": "bartlett", "bart": "bartlett", "brt": "bartlett",
    "triang": "triang", "triangle": "triang", "tri": "triang",
    "cosine": "cosine", "halfcosine": "cosine",
    "bohman": "bohman", "bman": "bohman", "bmn": "bohman",
    "barthann": "barthann", "brthan": "barthann", "bth": "barthann",
    "parzen": "parzen", "parz": "parzen", "par": "parzen",
}  # fmt: skip
_COSINE_SUMS = {
    "hann": (0.5, 0.5),
    "hamming": (0.54, 0.46),
    "blackman": (0.42, 0.50, 0.08),
    "blackmanharris": (0.35875, 0.48829, 0.14128, 0.01168),
    "nuttall": (0.3635819, 0.4891775, 0.1365995, 0.0106411),
    "flattop": (0.21557895, 0.41663158, 0.277263158, 0.083578947, 0.006947368),
}


def _window_name(name: str) -> tuple[str, bool | None]:
    """(canonical name, forced symmetry or None) of a scipy window name; KeyError if unknown."""
    forced = None
    if name.endswith("_symmetric"):
        name, forced = name[: -len("_symmetric")], True
    elif name.endswith("_periodic"):
        name, forced = name[: -len("_periodic")], False
    return _WINDOW_ALIASES[name], forced


def _symmetric_window(name: str, m: int) -> list[float]:
    if m == 1:
        return [1.0]
    if name in _COSINE_SUMS:
        out = []
        for i in range(m):
            fac = -math.pi + 2.0 * math.pi * i / (m - 1)
            out.append(sum(a * math.cos(k * fac) for k, a in enumerate(_COSINE_SUMS[name])))
        return out
    if name == "boxcar":
        return [1.0] * m
    if name == "bartlett":
        return [2.0 * n / (m - 1) if n <= (m - 1) / 2.0 else 2.0 - 2.0 * n / (m - 1) for n in range(m)]
    if name == "triang":
        half = range(1, (m + 1) // 2 + 1)
        if m % 2 == 0:
            w = [(2.0 * n - 1.0) / m for n in half]
            return w + w[::-1]
        w = [2.0 * n / (m + 1.0) for n in half]
        return w + w[-2::-1]
    if name == "cosine":
        return [math.sin(math.pi / m * (i + 0.5)) for i in range(m)]
    if name == "bohman":
        inner = []
        for i in range(1, m - 1):
            fac = abs(-1.0 + 2.0 * i / (m - 1))
            inner.append((1 - fac) * math.cos(math.pi * fac) + 1.0 / math.pi * math.sin(math.pi * fac))
        return [0.0, *inner, 0.0]
    if name == "barthann":
        out = []
        for i in range(m):
            fac = abs(i / (m - 1) - 0.5)
            out.append(0.62 - 0.48 * fac + 0.38 * math.cos(2 * math.pi * fac))
        return out
    if name == "parzen":
        out = []
        for i in range(m):
            a = abs(-(m - 1) / 2.0 + i)
            if a > (m - 1) / 4.0:
                out.append(2 * (1 - a / (m / 2.0)) ** 3)
            else:
                out.append(1 - 6 * (a / (m / 2.0)) ** 2 + 6 * (a / (m / 2.0)) ** 3)
        return out
    raise KeyError(name)


def window_values(window, length: int, periodic: bool) -> list[float] | None:
    """The window as scipy's ``get_window(window, length, fftbins=periodic)`` gives it (float64
    values), the given array, or None (no window). Raises ShapeError for what Keras refuses."""
    if window is None:
        return None
    if isinstance(window, str):
        try:
            name, forced = _window_name(window)
        except KeyError:
            raise ShapeError(f"window '{window}' is not one of nnspec's windows: "
                             f"{', '.join(sorted(set(_WINDOW_ALIASES.values())))}") from None  # fmt: skip
        sym = (not periodic) if forced is None else forced
        if sym or length == 1:
            return _symmetric_window(name, length)
        return _symmetric_window(name, length + 1)[:-1]
    if not isinstance(window, (list, tuple)) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in window
    ):
        raise ShapeError(f"window must be a name, a list of numbers or null; got {window!r}")
    if len(window) != length:
        raise ShapeError(f"the window's length must be {length}; got {len(window)} values")
    return [float(v) for v in window]


def stft_kernel(shape, side: str, window=None, scaling=None, periodic: bool = False):
    """The initial values of STFTSpectrogram's ``real_kernel`` (``side`` real) or ``imag_kernel``,
    shape ``(frame_length, 1, bins)``, computed in float32 as Keras's ``initializers.STFT``.
    (The runtime's initializer ``{"type": "stft", side, window, scaling, periodic}``.)"""
    import numpy

    f32 = numpy.float32
    frame_length, _, bins = (int(d) for d in shape)
    with numpy.errstate(divide="ignore", invalid="ignore"):  # frame_length 1: 0 / 0, NaN as in Keras
        freq = numpy.arange(bins, dtype=f32) / f32((bins - 1) * 2)
    time = numpy.arange(frame_length, dtype=f32)
    args = ((f32(-2.0) * time)[:, None] * freq[None, :]) * f32(math.pi)
    trig = numpy.cos if side == "real" else numpy.sin
    kernel = trig(args.astype(numpy.float64)).astype(f32)
    win = window_values(window, frame_length, bool(periodic))
    if win is not None:
        w = numpy.asarray(win, numpy.float64).astype(f32)
        scale = f32(1.0)
        if scaling == "density":
            scale = numpy.sqrt(numpy.sum(w * w, dtype=f32))
        elif scaling == "spectrum":
            scale = numpy.sum(numpy.abs(w), dtype=f32)
        kernel = (kernel * w[:, None]) / scale
    return kernel.reshape(frame_length, 1, bins).astype(f32)


# ----------------------------------------------------------------------------- STFTSpectrogram

STFT_MODES = ("log", "magnitude", "psd", "real", "imag", "angle", "stft")
M_REAL, M_IMAG, M_MAG, M_PSD, M_LOG, M_ANGLE, M_STFT = range(7)
_MODE_CODE = {"real": M_REAL, "imag": M_IMAG, "magnitude": M_MAG, "psd": M_PSD, "log": M_LOG,
              "angle": M_ANGLE, "stft": M_STFT}  # fmt: skip
EPSILON = 1e-7  # keras.backend.epsilon()


def _stft_sizes(attrs) -> tuple[int, int, int]:
    """(frame step, fft length, bins) with Keras's defaults."""
    fl = attrs["frame_length"]
    step = attrs["frame_step"] or fl // 2
    fft = attrs["fft_length"] or 2 ** math.ceil(math.log2(fl))
    return step, fft, fft // 2 + 1


def _stft_check(attrs) -> None:
    fl, step, fft = attrs["frame_length"], attrs["frame_step"], attrs["fft_length"]
    rule = "STFTSpectrogram"
    if step is not None and step > fl:
        raise ShapeError(f"{rule}: frame_step must not exceed frame_length; got frame_step={step}, "
                         f"frame_length={fl}")  # fmt: skip
    if fft is not None and fft < fl:
        raise ShapeError(f"{rule}: fft_length must not be less than frame_length; got fft_length={fft}, "
                         f"frame_length={fl}")  # fmt: skip
    if _stft_sizes(attrs)[0] < 1:
        raise ShapeError(f"{rule}: frame_length {fl} gives a frame_step of 0; give frame_step")
    try:
        window_values(attrs["window"], fl, attrs["periodic"])
    except ShapeError as err:
        raise ShapeError(f"{rule}: {err}") from None


def _stft_frames_count(attrs, length):
    step = _stft_sizes(attrs)[0]
    fl = attrs["frame_length"]
    if length is None:
        return None
    if attrs["padding"] == "same":
        return (length + step - 1) // step
    return (length - fl) // step + 1


def _stft_infer(attrs, inputs, ctx):
    (x,) = inputs
    require_rank(x, 3, "STFTSpectrogram")
    if not x.dtype.startswith("float"):
        raise ShapeError(f"STFTSpectrogram takes a float input; got {x.dtype}")
    _stft_check(attrs)
    cf = attrs["data_format"] == "channels_first"
    length, channels = (x.shape[2], x.shape[1]) if cf else (x.shape[1], x.shape[2])
    if channels is None:
        raise ShapeError(f"STFTSpectrogram needs a known channel count; got {fmt_shape(x.shape)}")
    frames = _stft_frames_count(attrs, length)
    if frames is not None and frames < 1:
        raise ShapeError(f"STFTSpectrogram: {length} samples are fewer than frame_length "
                         f"{attrs['frame_length']} (padding valid); got {fmt_shape(x.shape)}")  # fmt: skip
    bins = _stft_sizes(attrs)[2] * (2 if attrs["mode"] == "stft" else 1)
    if attrs["expand_dims"]:
        shape = (x.shape[0], channels, frames, bins) if cf else (x.shape[0], frames, bins, channels)
    else:
        shape = (x.shape[0], channels * bins, frames) if cf else (x.shape[0], frames, channels * bins)
    return [TensorType(shape, "float32", False)]


def _stft_params(attrs, inputs, ctx):
    _, _, bins = _stft_sizes(attrs)
    shape = (attrs["frame_length"], 1, bins)
    out = []
    for side in ("real", "imag"):
        if attrs["mode"] != ("imag" if side == "real" else "real"):
            init = {"type": "stft", "side": side, "window": attrs["window"], "scaling": attrs["scaling"],
                    "periodic": attrs["periodic"]}  # fmt: skip
            out.append(ParamSpec(f"{side}_kernel", shape, init))
    return out


def _stft_geometry(attrs, x_shape) -> tuple:
    """(length, channels, input strides of time and channel, frame_length, step, zeros before,
    frames, bins, output strides of channel, frame and bin) per sample."""
    cf = attrs["data_format"] == "channels_first"
    length, channels = (x_shape[1], x_shape[0]) if cf else (x_shape[0], x_shape[1])
    sxt, sxc = (1, length) if cf else (channels, 1)
    step, _, bins = _stft_sizes(attrs)
    fl = attrs["frame_length"]
    pad = same_pad_before(length, fl, step, 1) if attrs["padding"] == "same" else 0
    frames = _stft_frames_count(attrs, length)
    nb = bins * (2 if attrs["mode"] == "stft" else 1)
    if attrs["expand_dims"]:
        syc, syt, syf = (frames * nb, nb, 1) if cf else (1, nb * channels, channels)
    else:
        syc, syt, syf = (nb * frames, 1, frames) if cf else (nb, channels * nb, 1)
    return (length, channels, sxt, sxc, fl, step, pad, frames, bins, syc, syt, syf)


def _stft_frames(xr, c, g, a):
    """Channel ``c``'s frames of one sample ``xr`` (flat) into ``a`` (frames, frame_length),
    zeros outside the signal (padding same)."""
    length, _, sxt, sxc, fl, step, pad, frames = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]
    for t in range(frames):
        start = t * step - pad
        for j in range(fl):
            p = start + j
            a[t, j] = xr[p * sxt + c * sxc] if 0 <= p < length else 0.0


def stft_forward(x, kr, ki, y, g, mode):
    """STFTSpectrogram on ``x`` (rows, values per sample) into ``y`` (rows, values per sample) with
    kernels ``kr``, ``ki`` (frame_length, bins); the absent one (modes real, imag) is unused."""
    channels, fl, frames, bins, syc, syt, syf = g[1], g[4], g[7], g[8], g[9], g[10], g[11]
    a = np.empty((frames, fl), np.float32)
    re = np.zeros((frames, bins), np.float32)
    im = np.zeros((frames, bins), np.float32)
    for r in range(x.shape[0]):
        xr = x[r]
        yr = y[r]
        for c in range(channels):
            _stft_frames(xr, c, g, a)
            if mode != M_IMAG:
                np.dot(a, kr, re)
            if mode != M_REAL:
                np.dot(a, ki, im)
            for t in range(frames):
                for f in range(bins):
                    o = c * syc + t * syt + f * syf
                    u = re[t, f]
                    v = im[t, f]
                    if mode == M_REAL:
                        yr[o] = u
                    elif mode == M_IMAG:
                        yr[o] = v
                    elif mode == M_STFT:
                        yr[o] = u
                        yr[o + bins * syf] = v
                    elif mode == M_ANGLE:
                        yr[o] = math.atan2(v, u)
                    else:
                        p = u * u + v * v
                        if mode == M_PSD:
                            yr[o] = 2.0 * p if 0 < f < bins - 1 else p
                        else:
                            mag = math.sqrt(max(p, EPSILON))
                            yr[o] = mag if mode == M_MAG else math.log(max(mag, EPSILON))


def stft_backward(x, kr, ki, dy, dx, dkr, dki, g, mode, need_dx, need_dr, need_di):
    """The gradient of ``stft_forward``: adds into ``dx`` (like ``x``), ``dkr`` and ``dki``
    (frame_length, bins; when needed). See the module docstring for the nonsmooth points."""
    length, channels, sxt, sxc, fl, step, pad, frames, bins, syc, syt, syf = g
    a = np.empty((frames, fl), np.float32)
    re = np.zeros((frames, bins), np.float32)
    im = np.zeros((frames, bins), np.float32)
    gr = np.zeros((frames, bins), np.float32)
    gi = np.zeros((frames, bins), np.float32)
    da = np.empty((frames, fl), np.float32)
    tmp = np.empty((frames, fl), np.float32)
    dk = np.empty((fl, bins), np.float32)
    for r in range(x.shape[0]):
        xr = x[r]
        dyr = dy[r]
        for c in range(channels):
            _stft_frames(xr, c, g, a)
            if mode != M_IMAG:
                np.dot(a, kr, re)
            if mode != M_REAL:
                np.dot(a, ki, im)
            for t in range(frames):
                for f in range(bins):
                    o = c * syc + t * syt + f * syf
                    gy = dyr[o]
                    u = re[t, f]
                    v = im[t, f]
                    su = 0.0
                    sv = 0.0
                    if mode == M_REAL:
                        su = gy
                    elif mode == M_IMAG:
                        sv = gy
                    elif mode == M_STFT:
                        su = gy
                        sv = dyr[o + bins * syf]
                    elif mode == M_ANGLE:
                        d = float(u) * u + float(v) * v
                        if d > 0.0:
                            su = -gy * v / d
                            sv = gy * u / d
                    else:
                        p = u * u + v * v
                        if mode == M_PSD:
                            k = 2.0 if 0 < f < bins - 1 else 1.0
                            su = 2.0 * k * gy * u
                            sv = 2.0 * k * gy * v
                        else:
                            share = 1.0 if p > EPSILON else (0.5 if p == EPSILON else 0.0)
                            if share > 0.0:
                                # magnitude: d sqrt(p) = dp / (2 sqrt(p)); log: d log sqrt(p) = dp / (2 p)
                                den = math.sqrt(p) if mode == M_MAG else p
                                su = share * gy * u / den
                                sv = share * gy * v / den
                    gr[t, f] = su
                    gi[t, f] = sv
            if need_dx:
                if mode != M_IMAG:
                    np.dot(gr, kr.T, da)
                else:
                    da[:, :] = 0.0
                if mode != M_REAL:
                    np.dot(gi, ki.T, tmp)
                    da += tmp
                for t in range(frames):
                    start = t * step - pad
                    for j in range(fl):
                        p = start + j
                        if 0 <= p < length:
                            dx[r, p * sxt + c * sxc] += da[t, j]
            if need_dr:
                np.dot(a.T, gr, dk)
                dkr += dk
            if need_di:
                np.dot(a.T, gi, dk)
                dki += dk


def _stft_kernel_vars(e, names) -> tuple:
    """The (real, imag) kernel variables as (frame_length, bins) matrices; the absent one is the
    present one (the kernels never read it)."""
    _, _, bins = _stft_sizes(e.attrs)
    fl = e.attrs["frame_length"]
    mode = e.attrs["mode"]
    sides = [s for s in ("real", "imag") if mode != ("imag" if s == "real" else "real")]
    got = dict(zip(sides, names))
    out = []
    for s in ("real", "imag"):
        v = got.get(s)
        out.append(None if v is None else f"{v}.reshape(({fl}, {bins}))")
    return tuple(out), (sides, fl, bins)


def _stft_emit(e):
    (kr, ki), _ = _stft_kernel_vars(e, e.p)
    kr, ki = kr or ki, ki or kr
    g = _stft_geometry(e.attrs, e.x_shapes[0])
    return [e.call(stft_forward, e.per_sample(e.x[0]), kr, ki, e.per_sample(e.y[0], True), g,
                   _MODE_CODE[e.attrs["mode"]])]  # fmt: skip


def _stft_backward(e):
    (kr, ki), (_, _, bins) = _stft_kernel_vars(e, e.p)
    (dr, di), _ = _stft_kernel_vars(e, e.dp)
    if e.dx[0] is None and dr is None and di is None:
        return []
    kr, ki = kr or ki, ki or kr
    none = f"np.zeros((1, {bins}), np.float32)"
    g = _stft_geometry(e.attrs, e.x_shapes[0])
    dx = e.per_sample(e.dx[0]) if e.dx[0] is not None else e.per_sample(e.x[0])  # unused placeholder
    return [e.call(stft_backward, e.per_sample(e.x[0]), kr, ki, e.per_sample(e.dy[0], True), dx,
                   dr or none, di or none, g, _MODE_CODE[e.attrs["mode"]], e.dx[0] is not None,
                   dr is not None, di is not None)]  # fmt: skip


def _stft_reference(attrs, inputs, params, masks=None):
    """Keras's computation in float64: each channel framed (zeros around for padding same), the
    frames times the kernels, the mode, then Keras's reshapes and transposes of (C, B, T)."""
    (x,) = inputs
    x = np.asarray(x, np.float64)
    cf = attrs["data_format"] == "channels_first"
    sig = x if cf else np.transpose(x, (0, 2, 1))  # (batch, channels, length)
    step = _stft_sizes(attrs)[0]
    fl = attrs["frame_length"]
    length = sig.shape[2]
    if attrs["padding"] == "same":
        frames = (length + step - 1) // step
        total = max(0, (frames - 1) * step + fl - length)
        sig = np.pad(sig, ((0, 0), (0, 0), (total // 2, total - total // 2)))
    frames = (sig.shape[2] - fl) // step + 1
    idx = np.arange(frames)[:, None] * step + np.arange(fl)[None, :]
    fr = sig[:, :, idx]  # (batch, channels, frames, frame_length)
    sides = [s for s in ("real", "imag") if attrs["mode"] != ("imag" if s == "real" else "real")]
    k = dict(zip(sides, params))
    re = np.einsum("bctj,jf->bcft", fr, k["real"][:, 0, :]) if "real" in k else None
    im = np.einsum("bctj,jf->bcft", fr, k["imag"][:, 0, :]) if "imag" in k else None
    mode = attrs["mode"]
    if mode == "real":
        out = re
    elif mode == "imag":
        out = im
    elif mode == "stft":
        out = np.concatenate([re, im], axis=2)
    elif mode == "angle":
        out = np.arctan2(im, re)
    else:
        power = re**2 + im**2
        if mode == "psd":
            out = power.copy()
            out[:, :, 1:-1] *= 2
        else:
            out = np.sqrt(np.maximum(power, EPSILON))
            if mode == "log":
                out = np.log(np.maximum(out, EPSILON))
    b, c, f, t = out.shape
    if attrs["expand_dims"]:
        return [np.transpose(out, (0, 1, 3, 2)) if cf else np.transpose(out, (0, 3, 2, 1))]
    out = out.reshape(b, c * f, t)
    return [out if cf else np.transpose(out, (0, 2, 1))]


# fmt: off
STFT_SPECTROGRAM = LayerDef(
    name="STFTSpectrogram",
    attrs=(
        Attr("mode", "enum", "log", "What each bin gives: log (log magnitude), magnitude, psd (power, "
             "inner bins doubled), real, imag, angle, or stft (real then imag bins).", choices=STFT_MODES),
        Attr("frame_length", "int", 256, "Samples per frame (the kernels' length).", minimum=1),
        Attr("frame_step", "int", None, "Samples between frame starts (null: frame_length // 2); at most "
             "frame_length.", minimum=1, nullable=True),
        Attr("fft_length", "int", None, "DFT size, at least frame_length (null: the next power of two); "
             "fft_length // 2 + 1 bins.", minimum=1, nullable=True),
        Attr("window", "any", "hann", "A scipy window name (hann, hamming, blackman...), a list of "
             "frame_length numbers, or null for none.", nullable=True),
        Attr("periodic", "bool", False, "Whether a named window is periodic (scipy's fftbins) rather than "
             "symmetric."),
        Attr("scaling", "enum", "density", "The window's normalization: density (its L2 norm), spectrum (its "
             "L1 norm) or null.", choices=("density", "spectrum"), nullable=True),
        Attr("padding", "enum", "valid", "valid: frames within the signal; same: zeros around so there are "
             "ceil(length / frame_step) frames.", choices=("valid", "same")),
        Attr("expand_dims", "bool", False, "Keep channels and bins apart: (frames, bins, channels), or "
             "(channels, frames, bins) with channels_first."),
        DATA_FORMAT_ATTR,
        *COMMON_ATTRS,
    ),
    infer=_stft_infer,
    params=_stft_params,
    emit=_stft_emit,
    emit_backward=_stft_backward,
    reference=_stft_reference,
    positional=("mode", "frame_length", "frame_step", "fft_length", "window", "periodic", "scaling",
                "padding", "expand_dims", "data_format"),
    doc="The short-time Fourier transform of each input channel, as Keras's STFTSpectrogram: a strided "
    "convolution with DFT-times-window kernels `real_kernel` and `imag_kernel` (frame_length, 1, "
    "fft_length // 2 + 1), trainable like any weight unless the layer is frozen, then the mode "
    "(log, magnitude, psd, real, imag, angle, stft). Input (batch, time, channels), or (batch, "
    "channels, time) with channels_first; output (batch, frames, channels * bins) or with "
    "expand_dims (batch, frames, bins, channels). Named windows: "
    "scipy's windows without parameters, except lanczos, exponential, taylor and tukey.",
)
# fmt: on


# ----------------------------------------------------------------------------- MelSpectrogram

_MEL_BREAK_HZ = 700.0
_MEL_HIGH_Q = 1127.0
W_NONE, W_HANN, W_HAMMING, W_ARRAY = range(4)


def _mel_config(attrs) -> dict:
    seq = attrs["sequence_length"] or attrs["fft_length"]
    fmax = attrs["max_freq"] or float(int(attrs["sampling_rate"] / 2))
    return {"seq": seq, "fmax": float(fmax)}


def _mel_frames_count(attrs, length):
    if length is None:
        return None
    n = attrs["fft_length"]
    return 1 + (length + 2 * (n // 2) - n) // attrs["sequence_stride"]


def _mel_infer(attrs, inputs, ctx):
    (x,) = inputs
    rule = "MelSpectrogram"
    require_rank(x, 2, rule)
    if not x.dtype.startswith("float"):
        raise ShapeError(f"{rule} takes a float input; got {x.dtype}")
    seq = _mel_config(attrs)["seq"]
    if attrs["fft_length"] < seq:
        raise ShapeError(f"{rule}: fft_length must be at least sequence_length; got fft_length="
                         f"{attrs['fft_length']}, sequence_length={seq}")  # fmt: skip
    w = attrs["window"]
    if isinstance(w, str) and w not in ("hann", "hamming"):
        raise ShapeError(f"{rule}: a window name must be hann or hamming; got '{w}'")
    if w is not None and not isinstance(w, str):
        try:
            window_values(w, seq, True)
        except ShapeError as err:
            raise ShapeError(f"{rule}: {err}") from None
    length = x.shape[1]
    if length is not None and length <= attrs["fft_length"] // 2:
        raise ShapeError(f"{rule}: the signal is reflected by fft_length // 2 = {attrs['fft_length'] // 2} "
                         f"samples at each end and needs more samples than that; got {fmt_shape(x.shape)}")  # fmt: skip
    return [TensorType((x.shape[0], attrs["num_mel_bins"], _mel_frames_count(attrs, length)), "float32", False)]


def _reflect(i, length):
    """Index ``i`` of a signal of ``length`` reflected at both ends (torch's reflect padding)."""
    if i < 0:
        return -i
    if i >= length:
        return 2 * (length - 1) - i
    return i


def _mel_tables(n_fft, win_len, wcode, warr, nmel, sr, fmin, fmax):
    """The windowed DFT matrices ``cw``, ``sw`` (win_len, bins) (``re = frames @ cw``, ``im =
    frames @ sw``, the window of ``win_len`` centered in ``n_fft``) and the mel matrix (bins,
    nmel) of Keras's ``linear_to_mel_weight_matrix``."""
    bins = n_fft // 2 + 1
    off = (n_fft - win_len) // 2
    cos_t = np.empty(n_fft, np.float64)
    sin_t = np.empty(n_fft, np.float64)
    for m in range(n_fft):
        cos_t[m] = math.cos(2.0 * math.pi * m / n_fft)
        sin_t[m] = math.sin(2.0 * math.pi * m / n_fft)
    cw = np.empty((win_len, bins), np.float32)
    sw = np.empty((win_len, bins), np.float32)
    for j in range(win_len):
        if wcode == W_HANN:
            w = 0.5 - 0.5 * math.cos(2.0 * math.pi * j / win_len)
        elif wcode == W_HAMMING:
            w = 0.54 - 0.46 * math.cos(2.0 * math.pi * j / win_len)
        elif wcode == W_ARRAY:
            w = warr[j]
        else:
            w = 1.0
        pos = off + j
        for k in range(bins):
            q = (k * pos) % n_fft
            cw[j, k] = w * cos_t[q]
            sw[j, k] = -w * sin_t[q]
    mel = np.zeros((bins, nmel), np.float32)
    lo = _MEL_HIGH_Q * math.log(1.0 + fmin / _MEL_BREAK_HZ)
    hi = _MEL_HIGH_Q * math.log(1.0 + fmax / _MEL_BREAK_HZ)
    for k in range(1, bins):  # the DC bin keeps weight 0
        hz = (sr / 2.0) * k / (bins - 1)
        mk = _MEL_HIGH_Q * math.log(1.0 + hz / _MEL_BREAK_HZ)
        for b in range(nmel):
            lower = lo + (hi - lo) * b / (nmel + 1)
            center = lo + (hi - lo) * (b + 1) / (nmel + 1)
            upper = lo + (hi - lo) * (b + 2) / (nmel + 1)
            v = min((mk - lower) / (center - lower), (upper - mk) / (upper - center))
            mel[k, b] = max(0.0, v)
    return cw, sw, mel


def _mel_frames(xr, g, a):
    """One sample's frames (reflect-padded, centered) into ``a`` (frames, win_len)."""
    length, n_fft, hop, win_len, frames = g[0], g[1], g[2], g[3], g[4]
    start0 = (n_fft - win_len) // 2 - n_fft // 2
    for t in range(frames):
        s = t * hop + start0
        for j in range(win_len):
            a[t, j] = xr[_reflect(s + j, length)]


def _mel_power(re, im, mag_exp, spec):
    for t in range(re.shape[0]):
        for k in range(re.shape[1]):
            s = math.sqrt(float(re[t, k]) * re[t, k] + float(im[t, k]) * im[t, k])
            spec[t, k] = s**mag_exp


def mel_forward(x, y, g, wcode, warr, c, power_to_db):
    """MelSpectrogram of ``x`` (rows, samples) into ``y`` (rows, nmel * frames). ``g`` = (samples,
    fft_length, stride, sequence_length, frames, nmel); ``c`` = (sampling_rate, min_freq, max_freq,
    top_db, mag_exp, min_power, ref_power). With ``power_to_db`` the clipping threshold is the
    whole batch's maximum less top_db, as Keras."""
    n_fft, win_len, frames, nmel = g[1], g[3], g[4], g[5]
    sr, fmin, fmax, top_db, mag_exp, min_power, ref_power = c
    cw, sw, mel = _mel_tables(n_fft, win_len, wcode, warr, nmel, sr, fmin, fmax)
    bins = n_fft // 2 + 1
    a = np.empty((frames, win_len), np.float32)
    re = np.empty((frames, bins), np.float32)
    im = np.empty((frames, bins), np.float32)
    spec = np.empty((frames, bins), np.float32)
    mv = np.empty((frames, nmel), np.float32)
    ref_db = 10.0 * math.log10(max(abs(ref_power), min_power))
    top = -np.inf
    for r in range(x.shape[0]):
        _mel_frames(x[r], g, a)
        np.dot(a, cw, re)
        np.dot(a, sw, im)
        _mel_power(re, im, mag_exp, spec)
        np.dot(spec, mel, mv)
        yr = y[r]
        for t in range(frames):
            for b in range(nmel):
                v = mv[t, b]
                if power_to_db:  # float32 dB values, maximum and floor, as Keras's
                    v = np.float32(10.0 * math.log10(max(v, min_power)) - ref_db)
                    top = max(top, float(v))
                yr[b * frames + t] = v
    if power_to_db:
        floor = np.float32(top - top_db)
        for r in range(y.shape[0]):
            for i in range(y.shape[1]):
                y[r, i] = max(y[r, i], floor)


def mel_backward(x, dy, dx, g, wcode, warr, c, power_to_db):
    """The gradient of ``mel_forward`` given ``dy`` (rows, nmel * frames): adds into ``dx``. A
    clipped dB value sends its gradient to the batch's maximum (split among tied maxima)."""
    n_fft, win_len, frames, nmel = g[1], g[3], g[4], g[5]
    length, hop = g[0], g[2]
    sr, fmin, fmax, top_db, mag_exp, min_power, ref_power = c
    cw, sw, mel = _mel_tables(n_fft, win_len, wcode, warr, nmel, sr, fmin, fmax)
    bins = n_fft // 2 + 1
    rows = x.shape[0]
    a = np.empty((frames, win_len), np.float32)
    re = np.empty((frames, bins), np.float32)
    im = np.empty((frames, bins), np.float32)
    spec = np.empty((frames, bins), np.float32)
    mv = np.empty((frames, nmel), np.float32)
    dmv = np.empty((frames, nmel), np.float32)
    dspec = np.empty((frames, bins), np.float32)
    da = np.empty((frames, win_len), np.float32)
    tmp = np.empty((frames, win_len), np.float32)
    ref_db = 10.0 * math.log10(max(abs(ref_power), min_power))
    db = np.empty((rows, frames, nmel), np.float64)
    top = -np.inf
    if power_to_db:  # the dB values of the whole batch first: the threshold needs their maximum
        for r in range(rows):
            _mel_frames(x[r], g, a)
            np.dot(a, cw, re)
            np.dot(a, sw, im)
            _mel_power(re, im, mag_exp, spec)
            np.dot(spec, mel, mv)
            for t in range(frames):
                for b in range(nmel):
                    v = float(np.float32(10.0 * math.log10(max(mv[t, b], min_power)) - ref_db))
                    db[r, t, b] = v
                    top = max(top, v)
    floor = float(np.float32(top - top_db))
    to_top = 0.0  # the gradient of the threshold, which is the maximum's
    ties = 0
    if power_to_db:
        for r in range(rows):
            for t in range(frames):
                for b in range(nmel):
                    v = db[r, t, b]
                    if v == top:
                        ties += 1
                    if v < floor:
                        to_top += dy[r, b * frames + t]
                    elif v == floor:
                        to_top += 0.5 * dy[r, b * frames + t]
    scale = 10.0 / math.log(10.0)
    for r in range(rows):
        _mel_frames(x[r], g, a)
        np.dot(a, cw, re)
        np.dot(a, sw, im)
        _mel_power(re, im, mag_exp, spec)
        np.dot(spec, mel, mv)
        for t in range(frames):
            for b in range(nmel):
                gy = dy[r, b * frames + t]
                if power_to_db:
                    v = db[r, t, b]
                    gl = gy if v > floor else (0.5 * gy if v == floor else 0.0)
                    if v == top:
                        gl += to_top / ties
                    m = mv[t, b]
                    share = 1.0 if m > min_power else (0.5 if m == min_power else 0.0)
                    gy = gl * share * scale / m if share > 0.0 else 0.0
                dmv[t, b] = gy
        np.dot(dmv, mel.T, dspec)
        for t in range(frames):
            for k in range(bins):
                u = float(re[t, k])
                v = float(im[t, k])
                s = math.sqrt(u * u + v * v)
                if s > 0.0:
                    f = dspec[t, k] * mag_exp * s ** (mag_exp - 1.0) / s
                    re[t, k] = f * u
                    im[t, k] = f * v
                else:  # PyTorch: NaN (sqrt at 0)
                    re[t, k] = 0.0
                    im[t, k] = 0.0
        np.dot(re, cw.T, da)
        np.dot(im, sw.T, tmp)
        da += tmp
        start0 = (n_fft - win_len) // 2 - n_fft // 2
        for t in range(frames):
            s0 = t * hop + start0
            for j in range(win_len):
                dx[r, _reflect(s0 + j, length)] += da[t, j]


def _mel_args(e) -> tuple:
    a = e.attrs
    cfg = _mel_config(a)
    (xs,) = e.x_shapes
    length = xs[0]
    g = (
        length,
        a["fft_length"],
        a["sequence_stride"],
        cfg["seq"],
        _mel_frames_count(a, length),
        a["num_mel_bins"],
    )
    w = a["window"]
    wcode = (
        {None: W_NONE, "hann": W_HANN, "hamming": W_HAMMING}.get(w, W_ARRAY)
        if not isinstance(w, list)
        else W_ARRAY
    )
    warr = (
        f"np.array({[float(v) for v in w]!r}, np.float64)" if wcode == W_ARRAY else "np.zeros(0, np.float64)"
    )
    c = (float(a["sampling_rate"]), float(a["min_freq"]), cfg["fmax"], float(a["top_db"]), float(a["mag_exp"]),
         float(a["min_power"]), float(a["ref_power"]))  # fmt: skip
    return g, wcode, warr, c


def _mel_emit(e):
    g, wcode, warr, c = _mel_args(e)
    return [
        e.call(
            mel_forward, e.x[0], e.per_sample(e.y[0], True), g, wcode, warr, c, bool(e.attrs["power_to_db"])
        )
    ]


def _mel_backward(e):
    if e.dx[0] is None:
        return []
    g, wcode, warr, c = _mel_args(e)
    return [e.call(mel_backward, e.x[0], e.per_sample(e.dy[0], True), e.dx[0], g, wcode, warr, c,
                   bool(e.attrs["power_to_db"]))]  # fmt: skip


def mel_matrix_reference(bins, nmel, sr, fmin, fmax):
    """Keras's ``linear_to_mel_weight_matrix`` in NumPy (float64), (bins, nmel)."""

    def to_mel(hz):
        return _MEL_HIGH_Q * np.log(1.0 + hz / _MEL_BREAK_HZ)

    freqs = np.linspace(0.0, sr / 2.0, bins)[1:]
    mel_bins = to_mel(freqs)[:, None]
    edges = np.linspace(to_mel(fmin), to_mel(fmax), nmel + 2)
    lower, center, upper = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    w = np.maximum(
        0.0, np.minimum((mel_bins - lower) / (center - lower), (upper - mel_bins) / (upper - center))
    )
    return np.pad(w, ((1, 0), (0, 0)))


def _mel_reference(attrs, inputs, params, masks=None):
    """torch.stft's centered, reflect-padded frames through NumPy's rfft, |X| ** mag_exp, the mel
    matrix, dB with the batch-wide top_db floor; float64."""
    (x,) = inputs
    x = np.asarray(x, np.float64)
    cfg = _mel_config(attrs)
    n, hop, seq = attrs["fft_length"], attrs["sequence_stride"], cfg["seq"]
    w = attrs["window"]
    k = np.arange(seq)
    if w == "hann":
        win = 0.5 - 0.5 * np.cos(2 * np.pi * k / seq)
    elif w == "hamming":
        win = 0.54 - 0.46 * np.cos(2 * np.pi * k / seq)
    elif w is None:
        win = np.ones(seq)
    else:
        win = np.asarray(w, np.float64)
    left = (n - seq) // 2
    full = np.zeros(n)
    full[left : left + seq] = win
    xp = np.pad(x, ((0, 0), (n // 2, n // 2)), mode="reflect")
    frames = 1 + (xp.shape[1] - n) // hop
    idx = np.arange(frames)[:, None] * hop + np.arange(n)[None, :]
    spec = np.abs(np.fft.rfft(xp[:, idx] * full, axis=-1)) ** attrs["mag_exp"]  # (batch, frames, bins)
    m = spec @ mel_matrix_reference(n // 2 + 1, attrs["num_mel_bins"], attrs["sampling_rate"], attrs["min_freq"],
                                    cfg["fmax"])  # fmt: skip
    if attrs["power_to_db"]:
        m = 10.0 * np.log10(np.maximum(m, attrs["min_power"]))
        m -= 10.0 * np.log10(max(abs(attrs["ref_power"]), attrs["min_power"]))
        m = np.maximum(m, m.max() - attrs["top_db"])
    return [np.swapaxes(m, -1, -2)]


# fmt: off
MEL_SPECTROGRAM = LayerDef(
    name="MelSpectrogram",
    attrs=(
        Attr("fft_length", "int", 2048, "DFT size; the signal is reflect-padded by fft_length // 2 at each end.",
             minimum=1),
        Attr("sequence_stride", "int", 512, "Samples between frame starts.", minimum=1),
        Attr("sequence_length", "int", None, "The window's length, at most fft_length (null: fft_length).",
             minimum=1, nullable=True),
        Attr("window", "any", "hann", "hann or hamming (periodic), a list of sequence_length numbers, or null "
             "(none).", nullable=True),
        Attr("sampling_rate", "float", 16000, "Samples per second of the signal.", minimum=0, exclusive_minimum=True),
        Attr("num_mel_bins", "int", 128, "Mel bands of the output.", minimum=1),
        Attr("min_freq", "float", 20.0, "Lower edge of the lowest mel band, in Hz."),
        Attr("max_freq", "float", None, "Upper edge of the highest band, in Hz (null: sampling_rate / 2, "
             "truncated).", nullable=True),
        Attr("power_to_db", "bool", True, "Output decibels, clipped at top_db under the batch's maximum."),
        Attr("top_db", "float", 80.0, "The clipping range in dB below the batch's maximum."),
        Attr("mag_exp", "float", 2.0, "The exponent of the magnitude: 1 amplitude, 2 power."),
        Attr("min_power", "float", 1e-10, "The floor of the power (and of ref_power) before the logarithm."),
        Attr("ref_power", "float", 1.0, "The power that is 0 dB."),
        *COMMON_ATTRS,
    ),
    infer=_mel_infer,
    emit=_mel_emit,
    emit_backward=_mel_backward,
    reference=_mel_reference,
    couples_batch=True,  # power_to_db's floor is the whole batch's maximum
    extra={"couples_batch_at_inference": True},  # in predict too: a batch is never split over threads
    positional=("fft_length", "sequence_stride", "sequence_length", "window", "sampling_rate", "num_mel_bins",
                "min_freq", "max_freq", "power_to_db", "top_db", "mag_exp", "min_power", "ref_power"),
    doc="A mel spectrogram of (batch, samples) signals, as Keras's MelSpectrogram on PyTorch: torch.stft "
    "(centered frames, reflect padding, periodic hann window), |X| ** mag_exp, an HTK mel filterbank, "
    "and with power_to_db decibels floored at top_db under the maximum of the whole batch (one sample's "
    "output depends on its batch, as in Keras). Output (batch, num_mel_bins, frames) with frames = "
    "1 + (samples + 2 (fft_length // 2) - fft_length) // sequence_stride; no weights.",
)
# fmt: on
