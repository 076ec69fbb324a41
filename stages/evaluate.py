"""DVC stage `evaluate`: test-set metrics of both models beside their baselines."""

from mnist_ae.pipeline import evaluate, run_stage

if __name__ == "__main__":
    run_stage("evaluate", evaluate.run)
