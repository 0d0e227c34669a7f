"""Reading and writing audio: mixdown, resampling, clear refusals, loudness normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from musgen.data.audio_io import AudioReadError, normalize_loudness, read_audio, rms_dbfs, write_audio
from musgen.errors import MusgenError


def _sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def _dominant_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


def test_stereo_is_mixed_down(tmp_path):
    left, right = _sine(440, 0.5, 16000), _sine(660, 0.5, 16000, amp=0.2)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    mono = read_audio(tmp_path / "st.wav", 16000)
    assert mono.dtype == np.float32 and mono.ndim == 1
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-6)


def test_resampled_to_the_requested_rate(tmp_path):
    sf.write(tmp_path / "a.flac", _sine(440, 1.0, 44100), 44100)
    wave = read_audio(tmp_path / "a.flac", 16000)
    assert len(wave) == 16000
    assert abs(_dominant_hz(wave, 16000) - 440) < 2
    assert len(read_audio(tmp_path / "a.flac", 16000, max_seconds=0.25)) == 4000


@pytest.mark.parametrize(
    "name, make, reason",
    [
        (
            "nan.wav",
            lambda p: sf.write(p, np.r_[_sine(440, 0.1, 8000), np.nan], 8000, subtype="FLOAT"),
            "NaN",
        ),
        ("silent.wav", lambda p: sf.write(p, np.zeros(8000), 8000), "silent"),
        (
            "quiet.wav",
            lambda p: sf.write(p, _sine(440, 0.1, 8000, amp=3e-5), 8000, subtype="FLOAT"),
            "silent",
        ),
        ("noise.wav", lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "not an audio file"),
        ("empty.wav", lambda p: p.write_bytes(b""), "empty file"),
        ("slow.wav", lambda p: sf.write(p, np.full(100, 0.5), 500), "sample rate"),
        ("wide.wav", lambda p: sf.write(p, np.full((10, 65), 0.5), 8000), "65 channels"),
    ],
)
def test_unusable_files_are_refused_with_a_reason(tmp_path, name, make, reason):
    make(tmp_path / name)
    with pytest.raises(AudioReadError) as err:
        read_audio(tmp_path / name, 16000)
    assert reason in err.value.reason and "\n" not in err.value.reason


def test_write_audio_round_trips_and_clips(tmp_path):
    wave = np.r_[_sine(440, 0.2, 16000), 1.7, -1.7].astype(np.float32)
    for name in ("deep/x.wav", "x.flac"):
        path = write_audio(tmp_path / name, wave, 16000)
        assert sf.info(path).samplerate == 16000 and sf.info(path).subtype == "PCM_16"
        back = read_audio(path, 16000)
        assert np.abs(back[:-2] - wave[:-2]).max() < 1e-3 and back[-2] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(MusgenError, match="cannot write audio as .mp4"):
        write_audio(tmp_path / "x.mp4", wave, 16000)


def test_normalize_loudness_hits_the_target_within_the_peak():
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.01
    out = normalize_loudness(noise, target_dbfs=-20.0, peak=0.99)
    assert abs(rms_dbfs(out) - -20.0) < 0.5 and np.abs(out).max() <= 0.99
    spiky = np.zeros(16000, np.float32)
    spiky[::4000] = 0.5  # reaching -20 dBFS RMS would need a peak far above full scale
    out = normalize_loudness(spiky, target_dbfs=-20.0, peak=0.99)
    assert np.abs(out).max() == pytest.approx(0.99, rel=1e-6) and rms_dbfs(out) < -20.0
    np.testing.assert_array_equal(normalize_loudness(np.zeros(10)), np.zeros(10))
