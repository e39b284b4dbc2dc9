"""A harder accuracy task: voice activity detection on synthetic speech, labelled by construction.

Digits and MNIST cannot tell quantizers apart (even int4 stays within half a point).
This task can. Sentences are spoken by espeak-ng (Debian package ``espeak-ng``) in
several voices and speeds, resampled to 16 kHz and placed at known times in streams of
silence, white and low-passed noise (noise bursts without speech included) at a range
of signal-to-noise ratios; every 32 ms frame is labelled speech when at least half of
it lies inside a spoken clip (its leading and trailing silence trimmed). Silero VAD
(the pinned ``silero-vad`` 6.2.3 model of :mod:`.fetch`, 16 kHz, six Conv layers and an
LSTM) scores each frame; a scheme is judged by

- **frame accuracy** against the labels and **agreement** with the float model's
  decisions (probability > 0.5),
- the **output SQNR** of its speech probabilities against the float model's.

Quantization is weights only: the model runs in onnxruntime with each Conv's weight
replaced by its dequantized integer weight and, for ``bc``/``oa``, its corrected bias
(integer inference does not run this model's LSTM and If nodes). Calibration
(output-aware quantization, bias correction) uses other sentences and other streams
than the test; the activations that make each Conv's Hessian are quantized to int8 with
one scale per tensor, as the hardware would receive them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .activation import activation_scale, quantize_activations
from .errors import InputError

__all__ = ["SAMPLE_RATE", "FRAME", "SpeechSet", "speech_set", "evaluate_vad", "format_vad_table",
           "ESPEAK_PACKAGE"]

SAMPLE_RATE = 16_000
FRAME = 512                 # silero-vad's 16 kHz chunk (32 ms)
CONTEXT = 64                # samples of the previous chunk the model expects in front
ESPEAK_PACKAGE = "espeak-ng"
_ESPEAK_RATE = 22_050
_VOICES = ("en-us", "en", "en-us+f3", "en+m3", "en-us+f2", "en+m7")
_TEST_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "A processing element multiplies eight bit activations with its weights.",
    "We measured the area of the static design against the baseline.",
    "Rain is expected later this evening across most of the northern region.",
    "Turn left at the second light and the station is on your right.",
    "Seven hundred and forty two samples were collected over three weeks.",
    "Would you like a cup of coffee before the meeting starts?",
    "The committee postponed its decision until the next quarter.",
    "Every block keeps half of its lanes at full precision.",
    "She sells sea shells by the sea shore on sunny afternoons.",
    "The train to Edinburgh leaves from platform nine at ten past six.",
)
_CALIBRATION_SENTENCES = (
    "Calibration data must never be the test data.",
    "An old mill stood by the river for two hundred years.",
    "Numbers like fourteen and forty are easy to confuse on the phone.",
    "The library opens at nine and closes at five on weekdays.",
    "Quantization without retraining needs careful rounding.",
    "My brother plays the violin in a small orchestra.",
)
#: Test streams, each of about STREAM_SECONDS.
TEST_STREAMS = 8
STREAM_SECONDS = 24.0
SEED = 11


@dataclass(frozen=True)
class SpeechSet:
    """Audio streams ``[S, T*FRAME]`` float32 at 16 kHz and frame labels ``[S, T]``."""

    audio: np.ndarray
    labels: np.ndarray
    calibration: np.ndarray

    @property
    def frames(self) -> int:
        return self.labels.size


def _speak(text: str, voice: str, speed: int, folder: Path) -> np.ndarray:
    path = folder / "clip.wav"
    result = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text],
                            capture_output=True, text=True)
    if result.returncode != 0 or not path.is_file():
        raise InputError(f"espeak-ng failed for voice {voice!r}: {result.stderr.strip()}")
    with wave.open(str(path)) as stream:
        if stream.getframerate() != _ESPEAK_RATE or stream.getsampwidth() != 2:
            raise InputError(f"espeak-ng gave {stream.getframerate()} Hz, "
                             f"{8 * stream.getsampwidth()}-bit audio; expected 22050 Hz 16-bit")
        samples = np.frombuffer(stream.readframes(stream.getnframes()), dtype="<i2")
    from scipy.signal import resample_poly

    audio = resample_poly(samples.astype(np.float64) / 32768.0, 320, 441)   # 22050 -> 16000
    loud = np.flatnonzero(np.abs(audio) > 0.02 * np.abs(audio).max())
    return audio[loud[0]:loud[-1] + 1]                                       # trim silence


def _noise(rng, length: int, kind: str) -> np.ndarray:
    white = rng.standard_normal(length)
    if kind == "white":
        return white
    from scipy.signal import lfilter
    brown = lfilter([1.0], [1.0, -0.97], white)          # low-passed: hum-like, speech-band heavy
    return brown / brown.std()


def _streams(sentences, count: int, seed: int, folder: Path, seconds: float):
    rng = np.random.default_rng(seed)
    clips = [_speak(text, _VOICES[i % len(_VOICES)], int(rng.integers(130, 200)), folder)
             for i, text in enumerate(sentences)]
    length = int(seconds * SAMPLE_RATE) // FRAME * FRAME
    audio = np.zeros((count, length))
    active = np.zeros((count, length), dtype=bool)
    for stream in range(count):
        at = int(rng.uniform(0.3, 1.0) * SAMPLE_RATE)
        while True:
            clip = clips[int(rng.integers(len(clips)))] * rng.uniform(0.3, 1.0)
            if at + len(clip) >= length:
                break
            audio[stream, at:at + len(clip)] += clip
            active[stream, at:at + len(clip)] = True
            at += len(clip) + int(rng.uniform(0.4, 2.5) * SAMPLE_RATE)
        speech_rms = np.sqrt(np.mean(audio[stream, active[stream]] ** 2))
        snr_db = (30, 20, 10, 5)[stream % 4]
        background = _noise(rng, length, ("white", "brown")[(stream // 4) % 2])
        background *= speech_rms / 10 ** (snr_db / 20)
        # Noise bursts without speech, 6 dB louder than the background.
        for _ in range(3):
            start = int(rng.integers(0, length - SAMPLE_RATE))
            burst = slice(start, start + int(0.6 * SAMPLE_RATE))
            background[burst] *= 2.0
        audio[stream] += background
    peak = np.abs(audio).max()
    audio = (audio / peak * 0.9).astype(np.float32)
    labels = active.reshape(count, -1, FRAME).mean(axis=-1) >= 0.5
    return audio, labels


def speech_set(seed: int = SEED, *, streams: int = TEST_STREAMS,
               seconds: float = STREAM_SECONDS) -> SpeechSet:
    """The test streams and the calibration streams (other sentences, other seed).

    ``streams`` test streams of ``seconds`` each (the calibration: half as many, at
    least 2); every stream has its own SNR (30, 20, 10, 5 dB in turn) and noise colour.

    Raises
    ------
    InputError
        espeak-ng is missing (Debian package ``espeak-ng``) or fails.
    """
    if shutil.which("espeak-ng") is None:
        raise InputError(f"--data speech needs espeak-ng on the PATH: apt-get install "
                         f"{ESPEAK_PACKAGE}")
    with tempfile.TemporaryDirectory(prefix="strum-speech-") as scratch:
        audio, labels = _streams(_TEST_SENTENCES, streams, seed, Path(scratch), seconds)
        calibration, _ = _streams(_CALIBRATION_SENTENCES, max(2, streams // 2), seed + 1000,
                                  Path(scratch), seconds)
    return SpeechSet(audio=audio, labels=labels, calibration=calibration)


# -- running the model ---------------------------------------------------------------------

class _Vad:
    """Silero VAD in onnxruntime, with the Conv weights and biases replaceable."""

    def __init__(self, path):
        import onnx

        from .onnx_io import load_layers

        self.path = Path(path)
        self.proto = onnx.load(str(self.path))
        names = [i.name for i in self.proto.graph.input]
        if names[:3] != ["input", "state", "sr"]:
            raise InputError(f"{self.path}: expected silero-vad's inputs input, state, sr; "
                             f"found {', '.join(names)}")
        self.layers = [layer for layer in load_layers(self.path) if not layer.graph_path]
        if not self.layers:
            raise InputError(f"{self.path}: no Conv in the main graph; use the 16 kHz "
                             f"silero_vad_16k_op15 model ('silero')")
        self.nodes = {node.output[0]: node for node in self.proto.graph.node if node.op_type == "Conv"}

    def model(self, weights=None, biases=None, probes=()):
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        model = onnx.ModelProto()
        model.CopyFrom(self.proto)
        graph = model.graph
        nodes = {node.output[0]: node for node in graph.node if node.op_type == "Conv"}
        for index, layer in enumerate(self.layers):
            node = nodes[layer.output]
            if weights is not None and layer.name in weights:
                name = f"strum/weight/{index}"
                graph.initializer.append(numpy_helper.from_array(
                    np.asarray(weights[layer.name], np.float32), name))
                node.input[1] = name
            if biases is not None and biases.get(layer.name) is not None:
                name = f"strum/bias/{index}"
                graph.initializer.append(numpy_helper.from_array(
                    np.asarray(biases[layer.name], np.float32), name))
                if len(node.input) > 2:
                    node.input[2] = name
                else:
                    node.input.append(name)
        for name in probes:
            graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        return model

    def run(self, model, audio: np.ndarray, probes=()):
        """Speech probabilities ``[S, T]`` (and every probe's values, frames stacked)."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
        streams, length = audio.shape
        chunks = audio.reshape(streams, -1, FRAME)
        state = np.zeros((2, streams, 128), np.float32)
        context = np.zeros((streams, CONTEXT), np.float32)
        rate = np.array(SAMPLE_RATE, dtype=np.int64)
        outputs = ["output", "stateN", *probes]
        probabilities, seen = [], {name: [] for name in probes}
        for t in range(chunks.shape[1]):
            x = np.concatenate([context, chunks[:, t]], axis=1)
            result = session.run(outputs, {"input": x, "state": state, "sr": rate})
            probabilities.append(result[0][:, 0])
            state = result[1]
            context = chunks[:, t, -CONTEXT:]
            for name, value in zip(probes, result[2:]):
                seen[name].append(value)
        return np.stack(probabilities, axis=1), seen


def _statistics(vad: _Vad, calibration: np.ndarray, rounding: str):
    """Per Conv: (Hessian [1, N, N] of int8 rows, mean row in real units)."""
    from .calibrate import LayerStatistics, layer_rows

    probes = sorted({layer.input for layer in vad.layers})
    _, seen = vad.run(vad.model(probes=probes), calibration, probes)
    statistics = {}
    for layer in vad.layers:
        values = np.concatenate(seen[layer.input])
        scale = activation_scale(values)
        x_int8 = quantize_activations(values, scale, rounding)
        rows = layer_rows(layer, x_int8).astype(np.float64)
        statistics[layer.name] = LayerStatistics(
            hessian=np.swapaxes(rows, 1, 2) @ rows, mean=rows.mean(axis=1) * scale,
            rows=rows.shape[1], positions=rows.shape[1] // (calibration.size // FRAME),
            act_scale=scale)
    return statistics


class _WeightsOnly:
    """The VAD behind the interface :meth:`.policy.Policy.choose` uses: "integer"
    inference here is the weights-only run (dequantized weights, corrected biases)."""

    def __init__(self, vad: _Vad):
        self.vad, self.layers, self.path = vad, vad.layers, vad.path

    def run_onnxruntime(self, audio):
        return self.vad.run(self.vad.model(), audio)[0]

    def run_integer(self, audio, quantized, act_scales=None, config=None):
        weights = {name: q.dequantize() for name, q in quantized.items()}
        biases = {name: q.bias for name, q in quantized.items()}
        return self.vad.run(self.vad.model(weights, biases), audio)[0]


def evaluate_vad(model, schemes, *, data: SpeechSet | None = None, method: str = "plain",
                 base=None, policy=None) -> dict:
    """Every scheme on the speech task: frame accuracy, agreement, probability SQNR.

    ``schemes`` are specs as :func:`.evaluate.evaluate` takes (``+oa``, ``+bc``,
    ``+policy`` with ``policy``, whose sensitivity pass runs weights only here).
    """
    from .calibrate import quantize_layer
    from .config import StrumConfig
    from .policy import network_cycles
    from .evaluate import parse_scheme, scheme_label, split_spec
    from .quantize import sqnr_db

    start = time.perf_counter()
    base = base or StrumConfig()
    vad = _Vad(model)
    network = _WeightsOnly(vad)
    data = data or speech_set()
    reference, _ = vad.run(vad.model(), data.audio)
    decided = reference > 0.5
    statistics = None
    longest = max(layer.weight[0].size for layer in vad.layers)
    report = {"model": vad.path.name, "data": "speech", "frames": int(data.frames),
              "speech_frames": int(data.labels.sum()), "seconds_of_audio":
              data.audio.size / SAMPLE_RATE, "float_accuracy": float(np.mean(decided == data.labels)),
              "quantization": "weights only (onnxruntime), Conv layers", "schemes": {}}
    for spec in schemes:
        scheme, how, per_layer = split_spec(spec, method)
        if per_layer and policy is None:
            raise InputError("a +policy scheme needs a policy (--keep-int8 or a budget)")
        config = parse_scheme(scheme, base, longest)
        if (how != "plain" or per_layer) and statistics is None:
            statistics = _statistics(vad, data.calibration, base.rounding)
        label = scheme_label(config, base) + ("" if how == "plain" else f"+{how}") \
            + ("+policy" if per_layer else "")
        chosen = None
        if per_layer:
            chosen = policy.choose(network, config, how, statistics, data.calibration, None)
            quantized = chosen.quantized
        else:
            quantized = {layer.name: quantize_layer(layer, config, None if statistics is None
                                                    else statistics[layer.name], how)
                         for layer in vad.layers}
        weights = {name: q.dequantize() for name, q in quantized.items()}
        biases = {name: q.bias for name, q in quantized.items()}
        probability, _ = vad.run(vad.model(weights, biases), data.audio)
        sizes = [layer.weight.size for layer in vad.layers]
        row = report["schemes"][label] = {
            "config": config.to_dict(), "method": how,
            "accuracy": float(np.mean((probability > 0.5) == data.labels)),
            "agreement": float(np.mean((probability > 0.5) == decided)),
            "output_sqnr_db": sqnr_db(reference, probability),
            "bits_per_weight": sum(q.bits_per_weight * n for q, n in zip(quantized.values(), sizes))
            / sum(sizes),
            "weight_sqnr_db": float(np.average(
                [sqnr_db(layer.weight, quantized[layer.name].dequantize()) for layer in vad.layers],
                weights=sizes)),
        }
        if statistics is not None:
            row["pe_cycles"] = network_cycles(network, quantized, statistics, config)
        if chosen is not None:
            row["policy"] = chosen.report
    report["seconds"] = time.perf_counter() - start
    return report


def format_vad_table(report: dict) -> str:
    lines = [f"{report['model']} on synthetic speech: {report['frames']} frames "
             f"({report['seconds_of_audio']:.0f} s, {report['speech_frames']} speech), "
             f"float frame accuracy {100 * report['float_accuracy']:.2f} %; {report['quantization']}",
             "",
             "| scheme | bits/weight | weight SQNR dB | frame accuracy % | agreement % | "
             "output SQNR dB | static PE cycles / int8 PE |",
             "|---|---|---|---|---|---|---|"]
    for label, row in report["schemes"].items():
        cycles = (row.get("pe_cycles") or {}).get("static_vs_int8_pe")
        lines.append(f"| {label} | {row['bits_per_weight']:.3f} | {row['weight_sqnr_db']:.1f} | "
                     f"{100 * row['accuracy']:.2f} | {100 * row['agreement']:.2f} | "
                     f"{row['output_sqnr_db']:.1f} | {'1.00' if cycles is None else f'{cycles:.2f}'} |")
    return "\n".join(lines)
