"""Waveform distances for evaluation: the codec's training loss (multi-resolution STFT), log-mel L1
and SI-SDR. They live in ``musgen.modules.audio_losses`` because training uses them too."""

from musgen.modules.audio_losses import (
    EPS,
    MultiResolutionSTFTLoss,
    log_mel,
    log_mel_l1,
    si_sdr,
    stft_magnitude,
)

__all__ = ["EPS", "MultiResolutionSTFTLoss", "log_mel", "log_mel_l1", "si_sdr", "stft_magnitude"]
