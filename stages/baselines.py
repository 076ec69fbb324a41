"""DVC stage `baselines`: PCA at the AE's code size; classical denoisers tuned on train data."""

from mnist_ae.pipeline import baselines, run_stage

if __name__ == "__main__":
    run_stage("baselines", baselines.run)
