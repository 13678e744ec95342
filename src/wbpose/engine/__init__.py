"""Lightning glue: the LightningModule, the LightningDataModule, the LR schedule, callbacks and image logging.

Everything Lightning-specific lives here; the domain packages below (models, codecs, data, metrics, ...) run
without Lightning.
"""
