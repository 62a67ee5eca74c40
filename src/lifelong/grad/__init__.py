"""Gradient algebra on a Jacobian J (k tasks × p parameters), shared by multi-task weighting and
continual projection: each aggregator maps J to one update, most through weights of the Gramian
J Jᵀ solved on the CPU in float64; GEM/A-GEM projections reuse the same dual-cone solver."""

from lifelong.grad.aligned_mtl import AlignedMTL, aligned_mtl_weights
from lifelong.grad.base import Aggregator, GramianAggregator, check_jacobian, gramian
from lifelong.grad.cagrad import CAGrad, cagrad_weights
from lifelong.grad.cone import dual_cone_weights, min_norm_weights, project_weights
from lifelong.grad.config import ConFIG, config_weights
from lifelong.grad.constant import Constant, constant_update
from lifelong.grad.cr_mogm import CRMOGM, cr_mogm_weights
from lifelong.grad.db_mtl import DBMTL, db_mtl_step
from lifelong.grad.dualproj import DualProj, dualproj_weights
from lifelong.grad.excess_mtl import ExcessMTL, excess_mtl_weights, excess_risks
from lifelong.grad.fairgrad import FairGrad, fair_weights
from lifelong.grad.graddrop import GradDrop, graddrop
from lifelong.grad.gradvac import GradVac, gradvac_weights
from lifelong.grad.imtl import IMTL, imtl_weights
from lifelong.grad.imtl_g import IMTLG, imtl_g_weights
from lifelong.grad.jacobian import jacobian, write_grad
from lifelong.grad.krum import Krum, krum_weights
from lifelong.grad.layerwise import LayerwiseTrunks, layerwise_parameters
from lifelong.grad.mean import Mean, mean_weights
from lifelong.grad.mgda import MGDA, frank_wolfe_weights, mgda_weights
from lifelong.grad.moco import MoCo, moco_step
from lifelong.grad.modo import MoDo, modo_weights
from lifelong.grad.nash_mtl import NashMTL, nash_mtl_weights
from lifelong.grad.pcgrad import PCGrad, pcgrad_weights
from lifelong.grad.projection import agem_project, gem_project
from lifelong.grad.rgw import RGW, random_weights
from lifelong.grad.sdmgrad import SDMGrad, sdmgrad_weights
from lifelong.grad.simplex import project_simplex
from lifelong.grad.stitched import StitchedColumns
from lifelong.grad.sum import Sum, sum_weights
from lifelong.grad.trimmed_mean import TrimmedMean, trimmed_mean
from lifelong.grad.upgrad import UPGrad, upgrad_weights

__all__ = [
    "Aggregator", "AlignedMTL", "CAGrad", "ConFIG", "DualProj", "FairGrad", "GradDrop", "GradVac",
    "GramianAggregator", "IMTLG", "MGDA", "Mean", "NashMTL", "PCGrad", "RGW", "Sum", "UPGrad",
    "agem_project", "aligned_mtl_weights", "cagrad_weights", "check_jacobian", "config_weights",
    "dual_cone_weights", "project_weights", "dualproj_weights", "fair_weights", "frank_wolfe_weights", "gem_project",
    "graddrop", "gradvac_weights", "gramian", "imtl_g_weights", "jacobian", "mean_weights",
    "mgda_weights", "min_norm_weights", "nash_mtl_weights", "pcgrad_weights", "random_weights",
    "sum_weights", "upgrad_weights", "write_grad",
    "CRMOGM", "Constant", "ExcessMTL", "Krum", "TrimmedMean", "constant_update", "cr_mogm_weights",
    "excess_mtl_weights", "excess_risks", "krum_weights", "trimmed_mean",
    "DBMTL", "IMTL", "MoCo", "db_mtl_step", "imtl_weights", "moco_step", "project_simplex",
    "MoDo", "SDMGrad", "modo_weights", "sdmgrad_weights", "LayerwiseTrunks", "layerwise_parameters", "StitchedColumns",
]
