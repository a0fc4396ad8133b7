"""The MLflow "models from code" file of the price model: `log_model(python_model=<this path>)`.

MLflow copies this file into the logged model and runs it when `mlflow.pyfunc.load_model`
loads the model, so no pickled Python object is stored. Importing it registers the model with
`set_model`; only MLflow should import it.
"""

from mlflow.models import set_model

from cryptopred_training.mlflow_model import PricePredictorModel

set_model(PricePredictorModel())
