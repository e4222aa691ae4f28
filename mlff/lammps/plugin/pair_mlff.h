// pair_style mlff: an mlff student (a file written by `mlff export`) as a LAMMPS many-body
// pair style. Full neighbour list, newton_pair on: forces on ghost atoms are summed back to
// their owners by LAMMPS's reverse communication; per-atom energy and virial supported.

#ifndef LMP_PAIR_MLFF_H
#define LMP_PAIR_MLFF_H

#include "pair.h"

#include <memory>
#include <vector>

namespace mlff {
class Potential;
}

namespace LAMMPS_NS {

class PairMLFF : public Pair {
 public:
  explicit PairMLFF(class LAMMPS *);
  ~PairMLFF() override;

  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  void setup() override;
  double memory_usage() override;

 protected:
  std::unique_ptr<mlff::Potential> potential_;
  std::vector<int> element_of_type_;  // LAMMPS type -> file element, -1 for NULL
  double cutoff_ = 0.0;
  // The edges of this step, grouped by centre (reused between steps).
  std::vector<int> offsets_, centre_species_, neighbour_, neighbour_species_, centres_;
  std::vector<double> vectors_, energies_, grads_;
  void allocate();
};

}  // namespace LAMMPS_NS

#endif
