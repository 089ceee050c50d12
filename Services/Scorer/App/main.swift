import Scorer
