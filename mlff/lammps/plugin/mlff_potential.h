// An mlff potential file (written by `mlff export`, format in docs/lammps.md) and its
// evaluation: site energies E_i and edge gradients dE/dr_e for atoms whose edges come grouped
// by centre. It does not depend on LAMMPS, so it can be built and checked on its own.
//
// Conventions are mlff's: r_e = x_j - x_i for edge e = (i, j); grads[e] = dE/dr_e; the caller
// adds F_i += g_e, F_j -= g_e and the virial W = -sum_e r_e (x) g_e.

#ifndef MLFF_POTENTIAL_H
#define MLFF_POTENTIAL_H

#include <memory>
#include <string>
#include <vector>

namespace mlff {

constexpr int FORMAT_VERSION = 1;

// The edges of a set of centre atoms, grouped by centre: centre a (0 <= a < n_centres) owns
// edges offsets[a] .. offsets[a+1]-1. Species are indices into Potential::elements.
struct Edges {
  int n_centres = 0;
  const int *offsets = nullptr;          // (n_centres + 1,)
  const int *centre_species = nullptr;   // (n_centres,)
  const double *vectors = nullptr;       // (n_edges, 3) r_e = x_j - x_i, Angstrom
  const int *neighbour_species = nullptr;// (n_edges,)
};

class Part;

class Potential {
 public:
  // Reads and checks a potential file; throws std::runtime_error naming the file, the line and
  // what was expected.
  explicit Potential(const std::string &path);
  ~Potential();
  Potential(const Potential &) = delete;
  Potential &operator=(const Potential &) = delete;

  std::vector<std::string> elements;
  std::vector<double> masses;  // g/mol
  double cutoff = 0.0;         // Angstrom: the largest part cutoff

  // Adds E_a (eV) of centres first <= a < stop into energies[a] and dE/dr_e (eV/Angstrom) of
  // their edges into grads[3 e .. 3 e + 2]. Thread-safe for disjoint centre ranges.
  void add(const Edges &edges, int first, int stop, double *energies, double *grads) const;

  std::string describe() const;  // one line: elements, cutoff, parts

 private:
  std::vector<std::unique_ptr<Part>> parts_;
};

}  // namespace mlff

#endif
