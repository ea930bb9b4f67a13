"""Customer intelligence: segmentation, RFM, churn and forecast models (scikit-learn conventions).

Models are trained on every customer of a data version (:mod:`bi_app.ml.models`)
and applied under any filter; features are built in SQL (:mod:`bi_app.ml.features`).
"""
