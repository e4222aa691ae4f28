// pair_style mlff (see pair_mlff.h). The model's arithmetic lives in mlff_potential.cpp; this
// file gathers LAMMPS's neighbour list into edges grouped by centre, evaluates them (OpenMP
// threads over centres), and scatters forces, energies and virials with mlff's sign
// convention: F_i += g_e, F_j -= g_e and W = -sum_e r_e (x) g_e for r_e = x_j - x_i.

#include "pair_mlff.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "mlff_potential.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

#include <cstring>
#include <exception>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace LAMMPS_NS;

PairMLFF::PairMLFF(LAMMPS *lmp) : Pair(lmp) {
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  centroidstressflag = CENTROID_NOTAVAIL;
  // The global virial is summed from the edges, which is exact for any cell; f.r over
  // owned and ghost atoms would be too, but per-atom virials need the edges anyway.
  no_virial_fdotr_compute = 1;
}

PairMLFF::~PairMLFF() {
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairMLFF::allocate() {
  allocated = 1;
  int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
}

void PairMLFF::settings(int narg, char **arg) {
  if (narg != 0)
    error->all(FLERR, "pair_style mlff takes no arguments, got '{}'; the potential file goes in "
                      "pair_coeff * * FILE ELEMENT...", arg[0]);
}

void PairMLFF::coeff(int narg, char **arg) {
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff * * FILE needs one element (or NULL) for each of the {} atom "
                      "types, got {}", ntypes, narg - 3);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_style mlff takes pair_coeff * * FILE ELEMENT..., got pair_coeff {} {}",
               arg[0], arg[1]);
  try {
    potential_ = std::make_unique<mlff::Potential>(arg[2]);
  } catch (const std::exception &err) {
    error->all(FLERR, "pair_style mlff: {}", err.what());
  }
  cutoff_ = potential_->cutoff;
  element_of_type_.assign(ntypes + 1, -1);
  std::string known;
  for (const auto &e : potential_->elements) known += (known.empty() ? "" : " ") + e;
  for (int t = 1; t <= ntypes; ++t) {
    const char *name = arg[2 + t];
    if (strcmp(name, "NULL") == 0) continue;
    int found = -1;
    for (size_t k = 0; k < potential_->elements.size(); ++k)
      if (potential_->elements[k] == name) found = static_cast<int>(k);
    if (found < 0)
      error->all(FLERR, "pair_coeff: element {} (atom type {}) is not in {}, which has: {}",
                 name, t, arg[2], known);
    element_of_type_[t] = found;
  }
  int count = 0;
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) {
      setflag[i][j] = element_of_type_[i] >= 0 && element_of_type_[j] >= 0;
      count += setflag[i][j];
    }
  if (count == 0) error->all(FLERR, "pair_coeff * * {}: no atom type is mapped to an element",
                             arg[2]);
  if (comm->me == 0)
    utils::logmesg(lmp, "pair_style mlff: {} ({})\n", arg[2], potential_->describe());
}

void PairMLFF::init_style() {
  if (!potential_) error->all(FLERR, "pair_style mlff needs pair_coeff * * FILE ELEMENT...");
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style mlff requires newton pair on (forces on ghost atoms are "
                      "summed back to their owners)");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style mlff requires units metal (eV and Angstrom), got units {}",
               update->unit_style);
  neighbor->add_request(this, NeighConst::REQ_FULL);
}

double PairMLFF::init_one(int, int) { return cutoff_; }

void PairMLFF::setup() {
  double ghost = comm->get_comm_cutoff();
  if (cutoff_ > ghost)
    error->all(FLERR, "pair_style mlff: the potential's cutoff {} A is larger than the ghost "
                      "cutoff {} A; raise it with comm_modify cutoff", cutoff_, ghost);
}

void PairMLFF::compute(int eflag, int vflag) {
  ev_init(eflag, vflag);
  double **x = atom->x;
  double **f = atom->f;
  const int *type = atom->type;
  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  const double cutsq_all = cutoff_ * cutoff_;

  centres_.clear();
  centre_species_.clear();
  neighbour_.clear();
  neighbour_species_.clear();
  vectors_.clear();
  offsets_.assign(1, 0);
  for (int ii = 0; ii < inum; ++ii) {
    const int i = ilist[ii];
    const int si = element_of_type_[type[i]];
    if (si < 0) continue;
    const int *jlist = firstneigh[i];
    for (int jj = 0; jj < numneigh[i]; ++jj) {
      const int j = jlist[jj] & NEIGHMASK;
      const int sj = element_of_type_[type[j]];
      if (sj < 0) continue;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz >= cutsq_all) continue;
      neighbour_.push_back(j);
      neighbour_species_.push_back(sj);
      vectors_.push_back(dx);
      vectors_.push_back(dy);
      vectors_.push_back(dz);
    }
    centres_.push_back(i);
    centre_species_.push_back(si);
    offsets_.push_back(static_cast<int>(neighbour_.size()));
  }
  const int n = static_cast<int>(centres_.size());
  energies_.assign(n, 0.0);
  grads_.assign(vectors_.size(), 0.0);
  mlff::Edges edges;
  edges.n_centres = n;
  edges.offsets = offsets_.data();
  edges.centre_species = centre_species_.data();
  edges.vectors = vectors_.data();
  edges.neighbour_species = neighbour_species_.data();

  const int n_ranges = std::max(1, std::min(comm->nthreads, n / 64));
  std::string failure;
#if defined(_OPENMP)
#pragma omp parallel for num_threads(n_ranges) schedule(static, 1)
#endif
  for (int b = 0; b < n_ranges; ++b) {
    const int lo = static_cast<int>(static_cast<long>(b) * n / n_ranges);
    const int hi = static_cast<int>(static_cast<long>(b + 1) * n / n_ranges);
    try {
      potential_->add(edges, lo, hi, energies_.data(), grads_.data());
    } catch (const std::exception &err) {
#if defined(_OPENMP)
#pragma omp critical
#endif
      failure = err.what();
    }
  }
  if (!failure.empty()) error->one(FLERR, "pair_style mlff: {}", failure);

  for (int a = 0; a < n; ++a) {
    const int i = centres_[a];
    if (eflag_global) eng_vdwl += energies_[a];
    if (eflag_atom) eatom[i] += energies_[a];
    for (int e = offsets_[a]; e < offsets_[a + 1]; ++e) {
      const int j = neighbour_[e];
      const double *g = grads_.data() + 3 * e;
      const double *r = vectors_.data() + 3 * e;
      f[i][0] += g[0];
      f[i][1] += g[1];
      f[i][2] += g[2];
      f[j][0] -= g[0];
      f[j][1] -= g[1];
      f[j][2] -= g[2];
      if (vflag_either) {
        // LAMMPS's order xx, yy, zz, xy, xz, yz of W = -sum_e r_e (x) g_e
        const double v[6] = {-r[0] * g[0], -r[1] * g[1], -r[2] * g[2],
                             -r[0] * g[1], -r[0] * g[2], -r[1] * g[2]};
        if (vflag_global)
          for (int k = 0; k < 6; ++k) virial[k] += v[k];
        if (vflag_atom)
          for (int k = 0; k < 6; ++k) {
            vatom[i][k] += 0.5 * v[k];
            vatom[j][k] += 0.5 * v[k];
          }
      }
    }
  }
}

double PairMLFF::memory_usage() {
  double bytes = Pair::memory_usage();
  bytes += sizeof(int) * (offsets_.capacity() + centre_species_.capacity() +
                          neighbour_.capacity() + neighbour_species_.capacity() +
                          centres_.capacity());
  bytes += sizeof(double) * (vectors_.capacity() + energies_.capacity() + grads_.capacity());
  return bytes;
}
