// ISA-generic bodies of the optimiser-row kernels (meaning: include/mtrank/kernels/optimizer_rows.hpp).
// Included by src/kernels/{avx2,avx512}/optimizer_rows_*.cpp inside an anonymous namespace after
// `struct Ops` (simd_ops_<isa>.hpp) and between `#pragma GCC optimize("fp-contract=off")` and
// its pop: every multiply and add below must round separately, exactly as the scalar reference,
// which makes the variants bit-identical to it.

void sgd_row_simd(float* w, float* buf, const float* g, Index n, const SgdRowArgs& a) {
  using V = Ops::V;
  const V wd = Ops::set1(a.weight_decay), mom = Ops::set1(a.momentum), omd = Ops::set1(a.one_minus_dampening);
  const V nlr = Ops::set1(a.neg_lr);
  const bool has_wd = a.weight_decay != 0.0f, has_mom = a.momentum != 0.0f;
  for (Index i = 0; i < n; i += Ops::W) {
    const auto m = Ops::mask(n - i);
    const V wv = Ops::load(w + i, m);
    V d = Ops::load(g + i, m);
    if (has_wd) d = Ops::add(d, Ops::mul(wd, wv));
    if (has_mom) {
      const V b = a.first ? d : Ops::add(Ops::mul(Ops::load(buf + i, m), mom), Ops::mul(omd, d));
      Ops::store(buf + i, b, m);
      d = a.nesterov ? Ops::add(d, Ops::mul(mom, b)) : b;
    }
    Ops::store(w + i, Ops::add(wv, Ops::mul(nlr, d)), m);
  }
}

void adam_row_simd(float* w, float* mm, float* vv, const float* g, Index n, const AdamRowArgs& a) {
  using V = Ops::V;
  const V b1 = Ops::set1(a.beta1), b2 = Ops::set1(a.beta2), omb1 = Ops::set1(a.one_minus_beta1),
          omb2 = Ops::set1(a.one_minus_beta2), nss = Ops::set1(a.neg_step_size), bc2 = Ops::set1(a.bc2_sqrt),
          eps = Ops::set1(a.eps), wd = Ops::set1(a.weight_decay), decay = Ops::set1(a.decay);
  const bool has_wd = a.weight_decay != 0.0f;
  for (Index i = 0; i < n; i += Ops::W) {
    const auto m = Ops::mask(n - i);
    V wv = Ops::load(w + i, m);
    V gi = Ops::load(g + i, m);
    if (has_wd) {
      if (a.decoupled) wv = Ops::mul(wv, decay);
      else gi = Ops::add(gi, Ops::mul(wd, wv));
    }
    const V mi = Ops::add(Ops::mul(Ops::load(mm + i, m), b1), Ops::mul(omb1, gi));
    const V vi = Ops::add(Ops::mul(Ops::load(vv + i, m), b2), Ops::mul(Ops::mul(omb2, gi), gi));
    Ops::store(mm + i, mi, m);
    Ops::store(vv + i, vi, m);
    const V denom = Ops::add(Ops::div(Ops::sqrt(vi), bc2), eps);
    Ops::store(w + i, Ops::add(wv, Ops::mul(nss, Ops::div(mi, denom))), m);
  }
}

void adagrad_row_simd(float* w, float* sum, const float* g, Index n, const AdagradRowArgs& a) {
  using V = Ops::V;
  const V wd = Ops::set1(a.weight_decay), nclr = Ops::set1(a.neg_clr), eps = Ops::set1(a.eps);
  const bool has_wd = a.weight_decay != 0.0f;
  for (Index i = 0; i < n; i += Ops::W) {
    const auto m = Ops::mask(n - i);
    const V wv = Ops::load(w + i, m);
    V gi = Ops::load(g + i, m);
    if (has_wd) gi = Ops::add(gi, Ops::mul(wd, wv));
    const V s = Ops::add(Ops::load(sum + i, m), Ops::mul(gi, gi));
    Ops::store(sum + i, s, m);
    Ops::store(w + i, Ops::add(wv, Ops::mul(nclr, Ops::div(gi, Ops::add(Ops::sqrt(s), eps)))), m);
  }
}

void ftrl_row_simd(float* w, float* z, float* nacc, const float* g, Index n, const FtrlRowArgs& a) {
  using DV = Ops::DV;
  const DV alpha = Ops::dset1(a.alpha), beta = Ops::dset1(a.beta), l1 = Ops::dset1(a.l1), l2 = Ops::dset1(a.l2);
  const DV zero = Ops::dset1(0.0);
  for (Index i = 0; i < n; i += Ops::DW) {
    const long k = n - i;
    const DV gi = Ops::dload(g + i, k), n_old = Ops::dload(nacc + i, k), wv = Ops::dload(w + i, k);
    const DV n_new = Ops::dadd(n_old, Ops::dmul(gi, gi));
    const DV sigma = Ops::ddiv(Ops::dsub(Ops::dsqrt(n_new), Ops::dsqrt(n_old)), alpha);
    const DV zi = Ops::dsub(Ops::dadd(Ops::dload(z + i, k), gi), Ops::dmul(sigma, wv));
    Ops::dstore(z + i, zi, k);
    Ops::dstore(nacc + i, n_new, k);
    // Recompute from the stored (rounded) state, as the reference.
    const DV zs = Ops::dload(z + i, k), ns = Ops::dload(nacc + i, k);
    const DV num = Ops::dselect_pos(zs, Ops::dsub(zs, l1), Ops::dadd(zs, l1));
    const DV den = Ops::dadd(Ops::ddiv(Ops::dadd(beta, Ops::dsqrt(ns)), alpha), l2);
    const DV wn = Ops::ddiv(Ops::dsub(zero, num), den);
    Ops::dstore(w + i, Ops::dselect_le(Ops::dabs(zs), l1, zero, wn), k);
  }
}
