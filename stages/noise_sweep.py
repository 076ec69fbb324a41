"""DVC stage `noise_sweep`: the denoiser and the best classical one across noise levels."""

from mnist_ae.pipeline import noise_sweep, run_stage

if __name__ == "__main__":
    run_stage("noise_sweep", noise_sweep.run)
