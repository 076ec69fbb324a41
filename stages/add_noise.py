"""DVC stage `add_noise`: clip(x + noise_factor * N(0, 1), 0, 1) for train and test."""

from mnist_ae.pipeline import add_noise, run_stage

if __name__ == "__main__":
    run_stage("add_noise", add_noise.run)
