"""Metrics of saliency maps: pointing games (localisation metrics to come).

``grid_pointing_game`` scores maps on n x n grids of distinct classes;
``summarize_pointing`` pools the scores; ``confident_correct`` picks the
images grids are built from.
"""

from jaxsal.metrics._pointing import confident_correct as confident_correct
from jaxsal.metrics._pointing import grid_pointing_game as grid_pointing_game
from jaxsal.metrics._pointing import smooth_maps as smooth_maps
from jaxsal.metrics._pointing import summarize_pointing as summarize_pointing

__all__ = ["confident_correct", "grid_pointing_game", "smooth_maps", "summarize_pointing"]
