// The parts of an mlff potential, evaluated as mlff's compiled CPU route evaluates them
// (mlff/kernels/*.py): the tables are those kernels' tables, written by `mlff export`, so this
// file owns no convention of its own. Tests compare it with mlff's ASE calculator.

#include "mlff_potential.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

namespace mlff {

namespace {

// ---------------------------------------------------------------------------------------
// Reading

struct Table {
  std::string type;  // "int" or "float"
  std::vector<long> shape;
  std::vector<double> values;  // ints are exact in a double up to 2^53
};

class Reader {
 public:
  explicit Reader(const std::string &path) : path_(path), in_(path) {
    if (!in_) fail("cannot open the file (does it exist and is it readable?)");
  }

  [[noreturn]] void fail(const std::string &what) const {
    std::ostringstream msg;
    msg << "mlff potential file '" << path_ << "'";
    if (line_no_ > 0) msg << ", line " << line_no_;
    msg << ": " << what;
    throw std::runtime_error(msg.str());
  }

  // The next line that is not blank or a comment, split into words; false at the end.
  bool words(std::vector<std::string> &out) {
    std::string line;
    while (std::getline(in_, line)) {
      ++line_no_;
      auto hash = line.find('#');
      if (hash != std::string::npos) line.erase(hash);
      std::istringstream split(line);
      out.clear();
      for (std::string w; split >> w;) out.push_back(w);
      if (!out.empty()) return true;
    }
    return false;
  }

  std::vector<std::string> expect(const std::string &key, size_t min_words) {
    std::vector<std::string> w;
    if (!words(w)) fail("the file ends where '" + key + "' was expected");
    if (w[0] != key) fail("expected '" + key + "', found '" + w[0] + "'");
    if (w.size() < min_words) fail("'" + key + "' needs more values");
    return w;
  }

  static long to_long(const Reader &r, const std::string &s) {
    try {
      size_t used = 0;
      long v = std::stol(s, &used);
      if (used != s.size()) throw std::invalid_argument(s);
      return v;
    } catch (const std::exception &) {
      r.fail("expected an integer, found '" + s + "'");
    }
  }

  static double to_double(const Reader &r, const std::string &s) {
    try {
      size_t used = 0;
      double v = std::stod(s, &used);
      if (used != s.size() || !std::isfinite(v)) throw std::invalid_argument(s);
      return v;
    } catch (const std::exception &) {
      r.fail("expected a finite number, found '" + s + "'");
    }
  }

  // The entries of one part, up to its 'end'.
  std::map<std::string, Table> part_entries() {
    std::map<std::string, Table> out;
    std::vector<std::string> w;
    while (true) {
      if (!words(w)) fail("the file ends inside a part (missing 'end')");
      if (w[0] == "end") return out;
      if (w.size() < 3) fail("an entry needs 'name type ndim dims...', found '" + w[0] + "'");
      Table t;
      t.type = w[1];
      if (t.type != "int" && t.type != "float")
        fail("entry '" + w[0] + "' has type '" + t.type + "'; expected int or float");
      long ndim = to_long(*this, w[2]);
      if (ndim < 0 || static_cast<long>(w.size()) != 3 + ndim)
        fail("entry '" + w[0] + "' declares " + w[2] + " dimensions but gives " +
             std::to_string(w.size() - 3));
      long count = 1;
      for (long d = 0; d < ndim; ++d) {
        long n = to_long(*this, w[3 + d]);
        if (n < 0) fail("entry '" + w[0] + "' has a negative dimension");
        t.shape.push_back(n);
        count *= n;
      }
      t.values.reserve(count);
      std::vector<std::string> v;
      while (static_cast<long>(t.values.size()) < count) {
        if (!words(v)) fail("the file ends inside entry '" + w[0] + "'");
        for (const auto &s : v) {
          if (static_cast<long>(t.values.size()) == count)
            fail("entry '" + w[0] + "' has more than its " + std::to_string(count) + " values");
          t.values.push_back(t.type == "int" ? static_cast<double>(to_long(*this, s))
                                             : to_double(*this, s));
        }
      }
      if (out.count(w[0])) fail("entry '" + w[0] + "' appears twice");
      out.emplace(w[0], std::move(t));
    }
  }

 private:
  std::string path_;
  std::ifstream in_;
  long line_no_ = 0;
};

// Typed access to a part's entries, with errors that name the part and entry.
class Entries {
 public:
  Entries(const Reader &reader, std::string part, std::map<std::string, Table> tables)
      : reader_(reader), part_(std::move(part)), tables_(std::move(tables)) {}

  const Table &get(const std::string &name, const std::string &type,
                   std::vector<long> shape) const {
    auto it = tables_.find(name);
    if (it == tables_.end()) reader_.fail("part '" + part_ + "' lacks entry '" + name + "'");
    const Table &t = it->second;
    if (t.type != type)
      reader_.fail("entry '" + name + "' of part '" + part_ + "' is " + t.type + ", expected " +
                   type);
    bool ok = t.shape.size() == shape.size();
    for (size_t d = 0; ok && d < shape.size(); ++d)
      ok = shape[d] < 0 || shape[d] == t.shape[d];
    if (!ok) {
      std::ostringstream msg;
      msg << "entry '" << name << "' of part '" << part_ << "' has shape (";
      for (auto d : t.shape) msg << d << ",";
      msg << "), expected (";
      for (auto d : shape) msg << (d < 0 ? std::string("any") : std::to_string(d)) << ",";
      msg << ")";
      reader_.fail(msg.str());
    }
    return t;
  }
  double scalar(const std::string &name) const { return get(name, "float", {}).values[0]; }
  long integer(const std::string &name) const {
    return static_cast<long>(get(name, "int", {}).values[0]);
  }
  std::vector<double> floats(const std::string &name, std::vector<long> shape) const {
    return get(name, "float", shape).values;
  }
  std::vector<int> ints(const std::string &name, std::vector<long> shape, long lo,
                        long hi) const {
    const Table &t = get(name, "int", shape);
    std::vector<int> out;
    out.reserve(t.values.size());
    for (double v : t.values) {
      if (v < lo || v >= hi)
        reader_.fail("entry '" + name + "' of part '" + part_ + "' has value " +
                     std::to_string(static_cast<long>(v)) + " outside [" + std::to_string(lo) +
                     ", " + std::to_string(hi) + ")");
      out.push_back(static_cast<int>(v));
    }
    return out;
  }
  const Table &shape_of(const std::string &name, const std::string &type) const {
    auto it = tables_.find(name);
    if (it == tables_.end()) reader_.fail("part '" + part_ + "' lacks entry '" + name + "'");
    if (it->second.type != type)
      reader_.fail("entry '" + name + "' of part '" + part_ + "' is " + it->second.type +
                   ", expected " + type);
    return it->second;
  }

 private:
  const Reader &reader_;
  std::string part_;
  std::map<std::string, Table> tables_;
};

// x^n for 0 <= n < 64 by binary powering with a fixed trip count and no branches, so that the
// loops over edges that call it vectorise (as mlff/kernels/common.py's ipow).
inline double ipow(double x, int n) {
  n = n > 0 ? n : 0;
  double out = 1.0, power = x;
  for (int bit = 0; bit < 6; ++bit) {
    out *= ((n >> bit) & 1) ? power : 1.0;
    power *= power;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The radial basis R_n(r) = T_n(x(r)) f(r) (mlff/kernels/radial.py).

struct Radial {
  int n_species = 0;
  std::vector<double> inv_r0, scale, offset;  // (S, S)
  int p = 0, q = 0, envelope_p = 0;
  double a = 0.0, cutoff = 0.0, inner_start = 0.0, inner_end = 0.0;

  void read(const Entries &e, int S) {
    n_species = S;
    inv_r0 = e.floats("radial.inv_r0", {S, S});
    scale = e.floats("radial.scale", {S, S});
    offset = e.floats("radial.offset", {S, S});
    p = static_cast<int>(e.integer("radial.agnesi_p"));
    q = static_cast<int>(e.integer("radial.agnesi_q"));
    a = e.scalar("radial.agnesi_a");
    cutoff = e.scalar("radial.cutoff");
    envelope_p = static_cast<int>(e.integer("radial.envelope_p"));
    inner_start = e.scalar("radial.inner_start");
    inner_end = e.scalar("radial.inner_end");
  }

  // R_n and dR_n/dr (rows of width w, n_max rows) of the first w lengths r with per-edge
  // constants ir0, sc, off.
  void evaluate(int w, const double *__restrict__ r, const double *__restrict__ ir0,
                const double *__restrict__ sc, const double *__restrict__ off, int n_max,
                double *__restrict__ rad, double *__restrict__ drad, double *__restrict__ x,
                double *__restrict__ dx, double *__restrict__ f, double *__restrict__ df) const {
    const double inv_cutoff = 1.0 / cutoff;
    const double c_env = 0.5 * envelope_p * (envelope_p + 1) * (envelope_p + 2);
    for (int k = 0; k < w; ++k) {
      double s = r[k] * ir0[k];
      double s_qp1 = ipow(s, q - p - 1), s_p = ipow(s, p);
      double s_qp = s_qp1 * s;
      double s_q = s_qp * s_p;
      double inv_den = 1.0 / (1.0 + s_qp);
      double y = 1.0 / (1.0 + a * s_q * inv_den);
      x[k] = sc[k] * y + off[k];
      double dg = a * (q * s_qp1 * s_p * (1.0 + s_qp) - (q - p) * s_q * s_qp1) *
                  (inv_den * inv_den);
      dx[k] = -sc[k] * dg * y * y * ir0[k];
      double xc = r[k] * inv_cutoff;
      double inside = xc < 1.0 ? 1.0 : 0.0;
      f[k] = inside * (1.0 + ipow(xc, envelope_p) *
                                 (-0.5 * (envelope_p + 1) * (envelope_p + 2) +
                                  xc * (envelope_p * (envelope_p + 2) -
                                        0.5 * envelope_p * (envelope_p + 1) * xc)));
      df[k] = inside * (-c_env * inv_cutoff) * ipow(xc, envelope_p - 1) * (1.0 - xc) * (1.0 - xc);
    }
    if (inner_end > 0.0) {
      double inv_width = 1.0 / (inner_end - inner_start);
      for (int k = 0; k < w; ++k) {
        double u = std::min(std::max((r[k] * ir0[k] - inner_start) * inv_width, 0.0), 1.0);
        double sw = u * u * u * (10.0 - 15.0 * u + 6.0 * u * u);
        double slope = 30.0 * u * u * (1.0 - u) * (1.0 - u) * inv_width * ir0[k];
        df[k] = df[k] * sw + f[k] * slope;
        f[k] = f[k] * sw;
      }
    }
    // T_n = 2x T_{n-1} - T_{n-2}; dT_n/dx = n U_{n-1}, U_m = 2x U_{m-1} - U_{m-2}.
    for (int k = 0; k < w; ++k) {
      rad[k] = 1.0;
      drad[k] = 0.0;
    }
    if (n_max > 1)
      for (int k = 0; k < w; ++k) {
        rad[w + k] = x[k];
        drad[w + k] = 1.0;
      }
    if (n_max > 2)
      for (int k = 0; k < w; ++k) {
        rad[2 * w + k] = 2.0 * x[k] * x[k] - 1.0;
        drad[2 * w + k] = 2.0 * x[k];
      }
    for (int n = 3; n < n_max; ++n)
      for (int k = 0; k < w; ++k) {
        rad[n * w + k] = 2.0 * x[k] * rad[(n - 1) * w + k] - rad[(n - 2) * w + k];
        drad[n * w + k] = 2.0 * x[k] * drad[(n - 1) * w + k] - drad[(n - 2) * w + k];
      }
    for (int n = 0; n < n_max; ++n)
      for (int k = 0; k < w; ++k) {
        drad[n * w + k] = n * drad[n * w + k] * dx[k] * f[k] + rad[n * w + k] * df[k];
        rad[n * w + k] = rad[n * w + k] * f[k];
      }
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------
// Parts

class Part {
 public:
  virtual ~Part() = default;
  double cutoff = 0.0;
  std::string kind, name;
  std::vector<int> local;  // file species -> this part's species (-1: unknown)

  virtual void add(const Edges &edges, int first, int stop, double *energies,
                   double *grads) const = 0;

 protected:
  void read_species(const Entries &e, int n_file_species) {
    cutoff = e.scalar("cutoff");
    const Table &t = e.shape_of("species", "int");
    long n = t.shape.empty() ? 0 : t.shape[0];
    auto species = e.ints("species", {n}, 0, n_file_species);
    local.assign(n_file_species, -1);
    for (long k = 0; k < n; ++k) local[species[k]] = static_cast<int>(k);
  }
  int n_species() const {
    int n = 0;
    for (int s : local) n += s >= 0;
    return n;
  }
};

namespace {

class OneBodyPart : public Part {
 public:
  std::vector<double> e0;
  OneBodyPart(const Entries &e, int n_file) {
    read_species(e, n_file);
    e0 = e.floats("e0", {n_species()});
  }
  void add(const Edges &edges, int first, int stop, double *energies, double *) const override {
    for (int a = first; a < stop; ++a) energies[a] += e0[local[edges.centre_species[a]]];
  }
};

class PairPart : public Part {
 public:
  Radial radial;
  std::vector<int> pair_index;  // (S, S)
  std::vector<double> weight;   // (n_pairs, n_max)
  int n_max = 0;

  PairPart(const Entries &e, int n_file) {
    read_species(e, n_file);
    int S = n_species();
    radial.read(e, S);
    const Table &w = e.shape_of("weight", "float");
    if (w.shape.size() != 2) e.get("weight", "float", {-1, -1});
    long n_pairs = w.shape[0];
    n_max = static_cast<int>(w.shape[1]);
    weight = w.values;
    pair_index = e.ints("pair_index", {S, S}, 0, n_pairs);
  }

  void add(const Edges &edges, int first, int stop, double *energies,
           double *grads) const override {
    // One centre's edges within the cutoff at a time, through the radial basis together.
    const int S = radial.n_species;
    std::vector<double> r, ir0, sc, off, rad, drad, x, dx, f, df;
    std::vector<int> edge;
    for (int a = first; a < stop; ++a) {
      const int si = local[edges.centre_species[a]];
      r.clear();
      ir0.clear();
      sc.clear();
      off.clear();
      edge.clear();
      for (int e = edges.offsets[a]; e < edges.offsets[a + 1]; ++e) {
        const double *v = edges.vectors + 3 * e;
        double rr = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        if (!(rr < cutoff)) continue;
        const int sj = local[edges.neighbour_species[e]];
        r.push_back(rr);
        ir0.push_back(radial.inv_r0[si * S + sj]);
        sc.push_back(radial.scale[si * S + sj]);
        off.push_back(radial.offset[si * S + sj]);
        edge.push_back(e);
      }
      const int w = static_cast<int>(r.size());
      if (w == 0) continue;
      for (auto *v : {&rad, &drad}) v->resize(static_cast<size_t>(n_max) * w);
      for (auto *v : {&x, &dx, &f, &df}) v->resize(w);
      radial.evaluate(w, r.data(), ir0.data(), sc.data(), off.data(), n_max, rad.data(),
                      drad.data(), x.data(), dx.data(), f.data(), df.data());
      double site = 0.0;
      for (int k = 0; k < w; ++k) {
        const int e = edge[k];
        const int sj = local[edges.neighbour_species[e]];
        const double *theta =
            weight.data() + static_cast<size_t>(pair_index[si * S + sj]) * n_max;
        double value = 0.0, slope = 0.0;
        for (int n = 0; n < n_max; ++n) {
          value += theta[n] * rad[static_cast<size_t>(n) * w + k];
          slope += theta[n] * drad[static_cast<size_t>(n) * w + k];
        }
        site += 0.5 * value;
        const double g = 0.5 * slope / r[k];
        const double *v = edges.vectors + 3 * e;
        for (int d = 0; d < 3; ++d) grads[3 * e + d] += g * v[d];
      }
      energies[a] += site;
    }
  }
};

// ZBL (mlff/models/repulsion.py): the screened Coulomb energy times a quintic switch from
// r_inner to r_outer, half to each end of the pair.
class ZBLPart : public Part {
 public:
  std::vector<double> z, r_inner, r_outer;
  ZBLPart(const Entries &e, int n_file) {
    read_species(e, n_file);
    int S = n_species();
    z = e.floats("z", {S});
    r_inner = e.floats("r_inner", {S, S});
    r_outer = e.floats("r_outer", {S, S});
  }
  void add(const Edges &edges, int first, int stop, double *energies,
           double *grads) const override {
    static const double C[4] = {0.18175, 0.50986, 0.28022, 0.02817};
    static const double D[4] = {3.19980, 0.94229, 0.40290, 0.20162};
    const double coulomb = 14.399645, screening = 0.46850;
    const int S = static_cast<int>(z.size());
    for (int a = first; a < stop; ++a) {
      const int si = local[edges.centre_species[a]];
      for (int e = edges.offsets[a]; e < edges.offsets[a + 1]; ++e) {
        const double *v = edges.vectors + 3 * e;
        double r = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        if (!(r < cutoff)) continue;
        const int sj = local[edges.neighbour_species[e]];
        double zi = z[si], zj = z[sj];
        double scr = screening / (std::pow(zi, 0.23) + std::pow(zj, 0.23));
        double x = r / scr, phi = 0.0, dphi = 0.0;
        for (int k = 0; k < 4; ++k) {
          double term = C[k] * std::exp(-D[k] * x);
          phi += term;
          dphi -= D[k] * term;
        }
        double pre = coulomb * zi * zj;
        double energy = pre * phi / r;
        double d_energy = pre * (dphi / scr / r - phi / (r * r));
        double lo = r_inner[si * S + sj], hi = r_outer[si * S + sj];
        double t = (r - lo) / (hi - lo), sw = 1.0, dsw = 0.0;
        if (t >= 1.0) {
          sw = 0.0;
        } else if (t > 0.0) {
          sw = 1.0 - t * t * t * (10.0 - 15.0 * t + 6.0 * t * t);
          dsw = -30.0 * t * t * (1.0 - t) * (1.0 - t) / (hi - lo);
        }
        energies[a] += 0.5 * energy * sw;
        double g = 0.5 * (d_energy * sw + energy * dsw) / r;
        for (int d = 0; d < 3; ++d) grads[3 * e + d] += g * v[d];
      }
    }
  }
};

// ---------------------------------------------------------------------------------------
// ACE (mlff/kernels/ace.py): LANES atoms at a time, one per lane, so that each product and
// readout term is one multiply-add over the lanes, which the compiler turns into vector
// instructions. Per-edge quantities are feature-major: edge s of lane b in column s*LANES+b.

constexpr int LANES = 8;

struct AceWorkspace {
  int width = 0;
  std::vector<double> r, unit, rad, drad, mono, ylm, h, dh, rad_n, drad_n, ir0, sc, off;
  std::vector<int> neighbour;
  std::vector<double> x, dx, f, df, powers, weights, along, gpoly, radial_l, gout;
  std::vector<double> buf, grad;
};

class ACEPart : public Part {
 public:
  Radial radial;
  int n_max = 0, n_channels = 0, n_lm = 0, l_max = 0, n_mono = 0, n_rows = 0;
  std::vector<int> exps, lower, degree_start;  // (n_mono, 3), (n_mono, 3), (l_max + 2)
  std::vector<double> ycoef;                   // (n_lm, n_mono)
  std::vector<int> dest, left, right;          // products
  std::vector<double> weight;
  std::vector<int> out, inp;     // readout
  std::vector<double> values;    // (S, nnz)
  std::vector<double> constant;  // (S,)

  ACEPart(const Entries &e, int n_file) {
    read_species(e, n_file);
    int S = n_species();
    radial.read(e, S);
    n_max = static_cast<int>(e.integer("n_max"));
    n_channels = static_cast<int>(e.integer("n_channels"));
    if (n_channels != S * n_max)
      throw std::runtime_error("ACE part: n_channels must be n_species * n_max");
    const Table &ds = e.shape_of("harmonics.degree_start", "int");
    if (ds.shape.size() != 1 || ds.shape[0] < 2)
      throw std::runtime_error("ACE part: harmonics.degree_start must have l_max + 2 entries");
    l_max = static_cast<int>(ds.shape[0]) - 2;
    n_lm = (l_max + 1) * (l_max + 1);
    const Table &ex = e.shape_of("harmonics.exps", "int");
    n_mono = ex.shape.empty() ? 0 : static_cast<int>(ex.shape[0]);
    exps = e.ints("harmonics.exps", {n_mono, 3}, 0, l_max + 1);
    lower = e.ints("harmonics.lower", {n_mono, 3}, 0, n_mono);
    degree_start = e.ints("harmonics.degree_start", {l_max + 2}, 0, n_mono + 1);
    ycoef = e.floats("harmonics.ycoef", {n_lm, n_mono});
    n_rows = static_cast<int>(e.integer("products.n_rows"));
    const Table &pd = e.shape_of("products.dest", "int");
    long n_terms = pd.shape.empty() ? 0 : pd.shape[0];
    dest = e.ints("products.dest", {n_terms}, 0, n_rows);
    left = e.ints("products.left", {n_terms}, 0, n_rows);
    right = e.ints("products.right", {n_terms}, 0, n_rows);
    weight = e.floats("products.weight", {n_terms});
    const Table &ro = e.shape_of("readout.out", "int");
    long nnz = ro.shape.empty() ? 0 : ro.shape[0];
    out = e.ints("readout.out", {nnz}, 0, n_rows);
    inp = e.ints("readout.inp", {nnz}, 0, n_rows);
    values = e.floats("readout.values", {S, nnz});
    constant = e.floats("readout.site_constant", {S});
    if (n_channels * n_lm >= n_rows)
      throw std::runtime_error("ACE part: products.n_rows must exceed n_channels * n_lm");
  }

  void workspace(AceWorkspace &ws, int slots) const {
    int w = LANES * slots;
    if (ws.width >= w && !ws.buf.empty()) return;
    ws.width = w;
    auto size = [](std::vector<double> &v, size_t n) { v.assign(n, 0.0); };
    size(ws.r, w);
    size(ws.unit, 3 * w);
    size(ws.rad, static_cast<size_t>(n_channels) * w);
    size(ws.drad, static_cast<size_t>(n_channels) * w);
    size(ws.mono, static_cast<size_t>(n_mono) * w);
    size(ws.ylm, static_cast<size_t>(n_lm) * w);
    size(ws.h, static_cast<size_t>(n_lm) * w);
    size(ws.dh, static_cast<size_t>(n_lm) * w);
    size(ws.rad_n, static_cast<size_t>(n_max) * w);
    size(ws.drad_n, static_cast<size_t>(n_max) * w);
    size(ws.ir0, w);
    size(ws.sc, w);
    size(ws.off, w);
    ws.neighbour.assign(w, 0);
    size(ws.x, w);
    size(ws.dx, w);
    size(ws.f, w);
    size(ws.df, w);
    size(ws.powers, static_cast<size_t>(3) * (l_max + 1) * w);
    size(ws.weights, static_cast<size_t>(n_mono) * w);
    size(ws.along, w);
    size(ws.gpoly, 3 * w);
    size(ws.radial_l, w);
    size(ws.gout, 3 * w);
    size(ws.buf, static_cast<size_t>(n_rows) * LANES);
    size(ws.grad, static_cast<size_t>(n_rows) * LANES);
  }

  void add(const Edges &edges, int first, int stop, double *energies,
           double *grads) const override {
    AceWorkspace ws;
    const int S = radial.n_species;
    for (int b0 = first; b0 < stop; b0 += LANES) {
      const int n_lanes = std::min(LANES, stop - b0);
      int n_slots = 1;
      for (int b = 0; b < n_lanes; ++b)
        n_slots = std::max(n_slots, edges.offsets[b0 + b + 1] - edges.offsets[b0 + b]);
      workspace(ws, n_slots);
      const int w = LANES * n_slots;
      int lane_species[LANES] = {0, 0, 0, 0, 0, 0, 0, 0};
      // 1. the edge basis: r, r^, per-edge radial constants; empty slots beyond the cutoff
      for (int b = 0; b < LANES; ++b) {
        int start = 0, count = 0, si = 0;
        if (b < n_lanes) {
          start = edges.offsets[b0 + b];
          count = edges.offsets[b0 + b + 1] - start;
          si = local[edges.centre_species[b0 + b]];
          lane_species[b] = si;
        }
        for (int s = 0; s < n_slots; ++s) {
          int k = s * LANES + b;
          if (s < count) {
            const double *v = edges.vectors + 3 * (start + s);
            double rr = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
            ws.r[k] = rr;
            ws.unit[k] = v[0] / rr;
            ws.unit[w + k] = v[1] / rr;
            ws.unit[2 * w + k] = v[2] / rr;
            int sj = local[edges.neighbour_species[start + s]];
            ws.neighbour[k] = sj;
            ws.ir0[k] = radial.inv_r0[si * S + sj];
            ws.sc[k] = radial.scale[si * S + sj];
            ws.off[k] = radial.offset[si * S + sj];
          } else {
            ws.r[k] = 2.0 * radial.cutoff;
            ws.unit[k] = 0.0;
            ws.unit[w + k] = 0.0;
            ws.unit[2 * w + k] = 1.0;
            ws.neighbour[k] = 0;
            ws.ir0[k] = radial.inv_r0[0];
            ws.sc[k] = radial.scale[0];
            ws.off[k] = radial.offset[0];
          }
        }
      }
      radial.evaluate(w, ws.r.data(), ws.ir0.data(), ws.sc.data(), ws.off.data(), n_max,
                      ws.rad_n.data(), ws.drad_n.data(), ws.x.data(), ws.dx.data(), ws.f.data(),
                      ws.df.data());
      for (int zc = 0; zc < S; ++zc)  // R_n into the neighbour element's channel block
        for (int n = 0; n < n_max; ++n) {
          double *o = ws.rad.data() + static_cast<size_t>(zc * n_max + n) * w;
          double *d_o = ws.drad.data() + static_cast<size_t>(zc * n_max + n) * w;
          const double *src = ws.rad_n.data() + static_cast<size_t>(n) * w;
          const double *d_src = ws.drad_n.data() + static_cast<size_t>(n) * w;
          for (int k = 0; k < w; ++k) {
            bool mine = ws.neighbour[k] == zc;
            o[k] = mine ? src[k] : 0.0;
            d_o[k] = mine ? d_src[k] : 0.0;
          }
        }
      // monomials of r^ and Y_lm
      for (int d = 0; d < 3; ++d) {
        double *p0 = ws.powers.data() + static_cast<size_t>(d * (l_max + 1)) * w;
        for (int k = 0; k < w; ++k) p0[k] = 1.0;
        for (int l = 1; l <= l_max; ++l) {
          double *pc = p0 + static_cast<size_t>(l) * w;
          const double *pp = pc - w, *u = ws.unit.data() + static_cast<size_t>(d) * w;
          for (int k = 0; k < w; ++k) pc[k] = pp[k] * u[k];
        }
      }
      for (int m = 0; m < n_mono; ++m) {
        double *o = ws.mono.data() + static_cast<size_t>(m) * w;
        const double *px = ws.powers.data() + static_cast<size_t>(0 * (l_max + 1) + exps[3 * m]) * w;
        const double *py = ws.powers.data() + static_cast<size_t>(1 * (l_max + 1) + exps[3 * m + 1]) * w;
        const double *pz = ws.powers.data() + static_cast<size_t>(2 * (l_max + 1) + exps[3 * m + 2]) * w;
        for (int k = 0; k < w; ++k) o[k] = px[k] * py[k] * pz[k];
      }
      for (int l = 0; l <= l_max; ++l)
        for (int lm = l * l; lm < (l + 1) * (l + 1); ++lm) {
          double *o = ws.ylm.data() + static_cast<size_t>(lm) * w;
          for (int k = 0; k < w; ++k) o[k] = 0.0;
          for (int m = degree_start[l]; m < degree_start[l + 1]; ++m) {
            double cm = ycoef[static_cast<size_t>(lm) * n_mono + m];
            if (cm == 0.0) continue;
            const double *mono = ws.mono.data() + static_cast<size_t>(m) * w;
            for (int k = 0; k < w; ++k) o[k] += cm * mono[k];
          }
        }
      // 2. A_{c,lm} = sum_s R_c Y_lm, per lane, into the buffer's first rows
      double *buf = ws.buf.data(), *grad = ws.grad.data();
      for (int c = 0; c < n_channels; ++c)
        for (int lm = 0; lm < n_lm; ++lm) {
          double acc[LANES] = {0, 0, 0, 0, 0, 0, 0, 0};
          const double *rc = ws.rad.data() + static_cast<size_t>(c) * w;
          const double *y = ws.ylm.data() + static_cast<size_t>(lm) * w;
          for (int s = 0; s < n_slots; ++s)
            for (int b = 0; b < LANES; ++b) acc[b] += rc[s * LANES + b] * y[s * LANES + b];
          double *row = buf + static_cast<size_t>(c * n_lm + lm) * LANES;
          for (int b = 0; b < LANES; ++b) row[b] = acc[b];
        }
      const int n_a = n_channels * n_lm;
      for (int b = 0; b < LANES; ++b) buf[n_a * LANES + b] = 1.0;
      std::fill(buf + static_cast<size_t>(n_a + 1) * LANES, buf + static_cast<size_t>(n_rows) * LANES, 0.0);
      products(buf, grad, lane_species, n_lanes);
      double e[LANES] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int k = 0; k < n_rows; ++k)
        for (int b = 0; b < LANES; ++b) e[b] += grad[k * LANES + b] * buf[k * LANES + b];
      for (int b = 0; b < n_lanes; ++b)
        energies[b0 + b] += 0.5 * e[b] + constant[lane_species[b]];
      pullback(buf, grad);
      // 3. h_lm = sum_c H R_c and g_lm = sum_c H R'_c per edge (sums in registers), then
      // dE/dr_e
      contract_h(grad, ws.rad.data(), ws.drad.data(), ws.h.data(), ws.dh.data(), n_slots, w);
      edge_gradients(ws, w);
      for (int b = 0; b < n_lanes; ++b) {
        int start = edges.offsets[b0 + b], count = edges.offsets[b0 + b + 1] - start;
        for (int s = 0; s < count; ++s) {
          int k = s * LANES + b;
          double *g = grads + 3 * static_cast<size_t>(start + s);
          g[0] += ws.gout[k];
          g[1] += ws.gout[w + k];
          g[2] += ws.gout[2 * w + k];
        }
      }
    }
  }

 private:
  // Four slots at a time share each load of H, as mlff/kernels/ace.py's _lane_contract_h.
  void contract_h(const double *__restrict__ grad, const double *__restrict__ rad,
                  const double *__restrict__ drad, double *__restrict__ h,
                  double *__restrict__ dh, int n_slots, int w) const {
    constexpr int BLOCK = 4;
    for (int lm = 0; lm < n_lm; ++lm) {
      int s = 0;
      for (; s + BLOCK <= n_slots; s += BLOCK) {
        double th[BLOCK][LANES] = {}, td[BLOCK][LANES] = {};
        for (int c = 0; c < n_channels; ++c) {
          const double *H = grad + static_cast<size_t>(c * n_lm + lm) * LANES;
          const double *rc = rad + static_cast<size_t>(c) * w + s * LANES;
          const double *drc = drad + static_cast<size_t>(c) * w + s * LANES;
          for (int q = 0; q < BLOCK; ++q)
            for (int b = 0; b < LANES; ++b) {
              th[q][b] += H[b] * rc[q * LANES + b];
              td[q][b] += H[b] * drc[q * LANES + b];
            }
        }
        for (int q = 0; q < BLOCK; ++q)
          for (int b = 0; b < LANES; ++b) {
            h[static_cast<size_t>(lm) * w + (s + q) * LANES + b] = th[q][b];
            dh[static_cast<size_t>(lm) * w + (s + q) * LANES + b] = td[q][b];
          }
      }
      for (; s < n_slots; ++s) {
        double th[LANES] = {}, td[LANES] = {};
        for (int c = 0; c < n_channels; ++c) {
          const double *H = grad + static_cast<size_t>(c * n_lm + lm) * LANES;
          const double *rc = rad + static_cast<size_t>(c) * w + s * LANES;
          const double *drc = drad + static_cast<size_t>(c) * w + s * LANES;
          for (int b = 0; b < LANES; ++b) {
            th[b] += H[b] * rc[b];
            td[b] += H[b] * drc[b];
          }
        }
        for (int b = 0; b < LANES; ++b) {
          h[static_cast<size_t>(lm) * w + s * LANES + b] = th[b];
          dh[static_cast<size_t>(lm) * w + s * LANES + b] = td[b];
        }
      }
    }
  }

  // The coupled values and H = dE/d(buffer) through the folded readout.
  void products(double *__restrict__ buf, double *__restrict__ grad, const int *lane_species,
                int n_lanes) const {
    const size_t n_terms = dest.size();
    for (size_t z = 0; z < n_terms; ++z) {
      const double *x = buf + static_cast<size_t>(left[z]) * LANES;
      const double *y = buf + static_cast<size_t>(right[z]) * LANES;
      double *o = buf + static_cast<size_t>(dest[z]) * LANES;
      const double wz = weight[z];
      double t[LANES];
      for (int b = 0; b < LANES; ++b) t[b] = wz * x[b] * y[b];
      for (int b = 0; b < LANES; ++b) o[b] += t[b];
    }
    std::fill(grad, grad + static_cast<size_t>(n_rows) * LANES, 0.0);
    const size_t nnz = out.size();
    bool same = true;
    for (int b = 1; b < n_lanes; ++b) same = same && lane_species[b] == lane_species[0];
    if (same) {
      const double *v = values.data() + static_cast<size_t>(lane_species[0]) * nnz;
      for (size_t z = 0; z < nnz; ++z) {
        const double *x = buf + static_cast<size_t>(inp[z]) * LANES;
        double *o = grad + static_cast<size_t>(out[z]) * LANES;
        double t[LANES];
        for (int b = 0; b < LANES; ++b) t[b] = v[z] * x[b];
        for (int b = 0; b < LANES; ++b) o[b] += t[b];
      }
    } else {
      for (size_t z = 0; z < nnz; ++z) {
        const double *x = buf + static_cast<size_t>(inp[z]) * LANES;
        double *o = grad + static_cast<size_t>(out[z]) * LANES;
        for (int b = 0; b < n_lanes; ++b) o[b] += values[lane_species[b] * nnz + z] * x[b];
      }
    }
  }

  // The coupled values' H pulled back into A's rows.
  void pullback(const double *__restrict__ buf, double *__restrict__ grad) const {
    const size_t n_terms = dest.size();
    for (size_t z = 0; z < n_terms; ++z) {
      const double *g = grad + static_cast<size_t>(dest[z]) * LANES;
      const double *x1 = buf + static_cast<size_t>(left[z]) * LANES;
      const double *x2 = buf + static_cast<size_t>(right[z]) * LANES;
      double *g1 = grad + static_cast<size_t>(left[z]) * LANES;
      const double wz = weight[z];
      double gz[LANES], t[LANES];
      for (int b = 0; b < LANES; ++b) gz[b] = wz * g[b];
      for (int b = 0; b < LANES; ++b) t[b] = g1[b] + gz[b] * x2[b];
      for (int b = 0; b < LANES; ++b) g1[b] = t[b];
      double *g2 = grad + static_cast<size_t>(right[z]) * LANES;
      for (int b = 0; b < LANES; ++b) t[b] = g2[b] + gz[b] * x1[b];
      for (int b = 0; b < LANES; ++b) g2[b] = t[b];
    }
  }

  // dE_i/dr_e = r^ sum g_lm Y_lm + (sum h_lm grad P_lm(r^) - sum l h_lm Y_lm r^) / r, with
  // P_lm = r^l Y_lm the solid harmonics (polynomials in r^'s components).
  void edge_gradients(AceWorkspace &ws, int w) const {
    double *along = ws.along.data(), *radial_l = ws.radial_l.data();
    for (int k = 0; k < w; ++k) {
      along[k] = 0.0;
      radial_l[k] = 0.0;
    }
    for (int lm = 0; lm < n_lm; ++lm) {
      const double *dh = ws.dh.data() + static_cast<size_t>(lm) * w;
      const double *y = ws.ylm.data() + static_cast<size_t>(lm) * w;
      for (int k = 0; k < w; ++k) along[k] += dh[k] * y[k];
    }
    for (int l = 1; l <= l_max; ++l)
      for (int lm = l * l; lm < (l + 1) * (l + 1); ++lm) {
        const double *h = ws.h.data() + static_cast<size_t>(lm) * w;
        const double *y = ws.ylm.data() + static_cast<size_t>(lm) * w;
        for (int k = 0; k < w; ++k) radial_l[k] += l * h[k] * y[k];
      }
    for (int l = 1; l <= l_max; ++l)
      for (int m = degree_start[l]; m < degree_start[l + 1]; ++m) {
        double *wm = ws.weights.data() + static_cast<size_t>(m) * w;
        for (int k = 0; k < w; ++k) wm[k] = 0.0;
        for (int lm = l * l; lm < (l + 1) * (l + 1); ++lm) {
          double cm = ycoef[static_cast<size_t>(lm) * n_mono + m];
          if (cm == 0.0) continue;
          const double *h = ws.h.data() + static_cast<size_t>(lm) * w;
          for (int k = 0; k < w; ++k) wm[k] += cm * h[k];
        }
      }
    for (int d = 0; d < 3; ++d) {
      double *g = ws.gpoly.data() + static_cast<size_t>(d) * w;
      const double *u = ws.unit.data() + static_cast<size_t>(d) * w;
      for (int k = 0; k < w; ++k) g[k] = 0.0;
      for (int m = (l_max >= 1 ? degree_start[1] : n_mono); m < n_mono; ++m) {
        int power = exps[3 * m + d];
        if (!power) continue;
        const double *wm = ws.weights.data() + static_cast<size_t>(m) * w;
        const double *low = ws.mono.data() + static_cast<size_t>(lower[3 * m + d]) * w;
        for (int k = 0; k < w; ++k) g[k] += power * wm[k] * low[k];
      }
      double *o = ws.gout.data() + static_cast<size_t>(d) * w;
      for (int k = 0; k < w; ++k) o[k] = u[k] * along[k] + (g[k] - radial_l[k] * u[k]) / ws.r[k];
    }
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------

Potential::Potential(const std::string &path) {
  Reader reader(path);
  std::vector<std::string> w;
  if (!reader.words(w) || w[0] != "mlff_potential")
    reader.fail("not an mlff potential: the first line must be 'mlff_potential <version>' "
                "(write one with `mlff export STUDENT --format lammps`)");
  if (w.size() != 2) reader.fail("the first line must be 'mlff_potential <version>'");
  long version = Reader::to_long(reader, w[1]);
  if (version != FORMAT_VERSION)
    reader.fail("format version " + std::to_string(version) + ", but this plugin reads version " +
                std::to_string(FORMAT_VERSION) +
                "; export the student with the mlff whose `mlff lammps build` built this plugin, "
                "or rebuild the plugin");
  auto el = reader.expect("elements", 2);
  long n_el = Reader::to_long(reader, el[1]);
  if (n_el < 1 || static_cast<long>(el.size()) != 2 + n_el)
    reader.fail("'elements' must give its count, then that many symbols");
  elements.assign(el.begin() + 2, el.end());
  auto ms = reader.expect("masses", 2);
  if (Reader::to_long(reader, ms[1]) != n_el || static_cast<long>(ms.size()) != 2 + n_el)
    reader.fail("'masses' must give one mass per element");
  for (long k = 0; k < n_el; ++k) masses.push_back(Reader::to_double(reader, ms[2 + k]));
  auto cut = reader.expect("cutoff", 2);
  cutoff = Reader::to_double(reader, cut[1]);
  if (!(cutoff > 0.0)) reader.fail("the cutoff must be positive");
  auto np = reader.expect("parts", 2);
  long n_parts = Reader::to_long(reader, np[1]);
  if (n_parts < 1) reader.fail("a potential needs at least one part");
  const int n_file = static_cast<int>(n_el);
  for (long p = 0; p < n_parts; ++p) {
    auto head = reader.expect("part", 3);
    Entries entries(reader, head[1], reader.part_entries());
    std::unique_ptr<Part> part;
    try {
      if (head[1] == "onebody")
        part = std::make_unique<OneBodyPart>(entries, n_file);
      else if (head[1] == "pair")
        part = std::make_unique<PairPart>(entries, n_file);
      else if (head[1] == "zbl")
        part = std::make_unique<ZBLPart>(entries, n_file);
      else if (head[1] == "ace")
        part = std::make_unique<ACEPart>(entries, n_file);
      else
        reader.fail("unknown part kind '" + head[1] + "'; this plugin knows onebody, pair, zbl, ace");
    } catch (const std::runtime_error &err) {
      std::string what = err.what();
      if (what.rfind("mlff potential file", 0) == 0) throw;
      reader.fail(what);
    }
    for (int s = 0; s < n_file; ++s)
      if (part->local[s] < 0)
        reader.fail("part '" + head[1] + "' does not cover element " + elements[s]);
    if (part->cutoff > cutoff + 1e-12)
      reader.fail("part '" + head[1] + "' has a cutoff beyond the file's");
    part->kind = head[1];
    part->name = head[2];
    parts_.push_back(std::move(part));
  }
  if (reader.words(w)) reader.fail("unexpected '" + w[0] + "' after the last part");
}

Potential::~Potential() = default;

void Potential::add(const Edges &edges, int first, int stop, double *energies,
                    double *grads) const {
  for (const auto &part : parts_) part->add(edges, first, stop, energies, grads);
}

std::string Potential::describe() const {
  std::ostringstream out;
  out << "elements";
  for (const auto &e : elements) out << " " << e;
  out << ", cutoff " << cutoff << " A, parts";
  for (const auto &p : parts_) out << " " << p->kind;
  return out.str();
}

}  // namespace mlff
