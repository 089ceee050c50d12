import Retrainer
