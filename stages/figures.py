"""DVC stage `figures`: every PNG — digits, baselines, noise sweep, latent space, errors."""

from mnist_ae.pipeline import figures, run_stage

if __name__ == "__main__":
    run_stage("figures", figures.run)
