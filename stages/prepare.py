"""DVC stage `prepare`: full MNIST (or its first N samples) as uint8 arrays."""

from mnist_ae.pipeline import prepare, run_stage

if __name__ == "__main__":
    run_stage("prepare", prepare.run)
