#include "mtrank/data/batch.hpp"

#include <cstring>
#include <numeric>

namespace mtrank::data {

void Dataset::gather(const std::vector<Index>& idx, Batch& out) const {
  const Index B = static_cast<Index>(idx.size());
  const Index nd = static_cast<Index>(schema.dense.size());
  const Index ns = static_cast<Index>(schema.sparse.size());
  const Index K = schema.num_tasks();
  out.size = B;
  out.dense.resize(Shape{B, nd});
  out.sparse.resize(static_cast<std::size_t>(B * ns));
  out.labels.resize(Shape{B, K});
  out.label_mask.resize(Shape{B, K});
  out.user.resize(static_cast<std::size_t>(B));
  out.scene.resize(static_cast<std::size_t>(B));
  const bool has_oracle = oracle.numel() > 0;
  if (has_oracle) out.oracle.resize(Shape{B, K});
  else out.oracle.resize(Shape{0, K});
  out.sequences.resize(sequences.size());
  for (auto& s : out.sequences) {
    s.ids.clear();
    s.times.clear();
    s.offsets.assign(1, 0);
  }
  for (Index b = 0; b < B; ++b) {
    const Index r = idx[static_cast<std::size_t>(b)];
    if (r < 0 || r >= rows) fail("Dataset::gather: row ", r, " out of range [0, ", rows, ")");
    if (nd) std::memcpy(out.dense.data() + b * nd, dense.data() + r * nd, sizeof(float) * nd);
    for (Index f = 0; f < ns; ++f) out.sparse[b * ns + f] = sparse[r * ns + f];
    for (Index k = 0; k < K; ++k) {
      out.labels[b * K + k] = labels[r * K + k];
      out.label_mask[b * K + k] = label_mask.numel() ? label_mask[r * K + k] : 1.0f;
      if (has_oracle) out.oracle[b * K + k] = oracle[r * K + k];
    }
    out.user[b] = user.empty() ? r : user[r];
    out.scene[b] = scene.empty() ? 0 : scene[r];
    for (std::size_t q = 0; q < sequences.size(); ++q) {
      const auto& src = sequences[q];
      auto& dst = out.sequences[q];
      const auto a = src.offsets[r], e = src.offsets[r + 1];
      dst.ids.insert(dst.ids.end(), src.ids.begin() + a, src.ids.begin() + e);
      if (!src.times.empty()) dst.times.insert(dst.times.end(), src.times.begin() + a, src.times.begin() + e);
      dst.offsets.push_back(static_cast<std::int64_t>(dst.ids.size()));
    }
  }
}

void Dataset::slice(Index begin, Index end, Batch& out) const {
  require(0 <= begin && begin <= end && end <= rows, "Dataset::slice: [", begin, ", ", end, ") not within [0, ", rows, ")");
  std::vector<Index> idx(static_cast<std::size_t>(end - begin));
  std::iota(idx.begin(), idx.end(), begin);
  gather(idx, out);
}

namespace {

template <class T>
void slice_tensor_rows(const TensorT<T>& in, Index batch, Index begin, Index end, TensorT<T>& out, const char* name) {
  const Shape& s = in.shape();
  if (s.rank() == 0 || (in.numel() == 0 && (s[0] != batch))) {  // not per-row data: keep as it is
    out = in;
    return;
  }
  require(s[0] == batch, "slice_batch: ", name, " has shape ", s, ", expected ", batch, " rows (the batch size)");
  const Index width = batch == 0 ? 0 : in.numel() / batch;
  Shape sliced = s;
  sliced[0] = end - begin;
  out.resize(sliced);
  if (out.numel()) std::memcpy(out.data(), in.data() + begin * width, sizeof(T) * static_cast<std::size_t>(out.numel()));
}

template <class V>
void slice_vector_rows(const V& in, Index batch, Index begin, Index end, V& out, const char* name) {
  const Index n = static_cast<Index>(in.size());
  if (n == 0) {
    out.clear();
    return;
  }
  require(batch > 0 && n % batch == 0, "slice_batch: ", name, " has ", n, " entries, not a multiple of the batch size ",
          batch);
  const Index width = n / batch;
  out.assign(in.begin() + begin * width, in.begin() + end * width);
}

}  // namespace

void slice_batch(const Batch& in, Index begin, Index end, Batch& out) {
  const Index B = in.size;
  require(0 <= begin && begin <= end && end <= B, "slice_batch: rows [", begin, ", ", end, ") not within [0, ", B, ")");
  out.size = end - begin;
  slice_tensor_rows(in.dense, B, begin, end, out.dense, "dense");
  slice_tensor_rows(in.labels, B, begin, end, out.labels, "labels");
  slice_tensor_rows(in.label_mask, B, begin, end, out.label_mask, "label_mask");
  slice_tensor_rows(in.oracle, B, begin, end, out.oracle, "oracle");
  slice_vector_rows(in.sparse, B, begin, end, out.sparse, "sparse");
  require(in.user.empty() || static_cast<Index>(in.user.size()) == B, "slice_batch: user has ", in.user.size(),
          " entries, expected ", B, " (the batch size) or none");
  slice_vector_rows(in.user, B, begin, end, out.user, "user");
  require(in.scene.empty() || static_cast<Index>(in.scene.size()) == B, "slice_batch: scene has ", in.scene.size(),
          " entries, expected ", B, " (the batch size) or none");
  slice_vector_rows(in.scene, B, begin, end, out.scene, "scene");
  out.sequences.resize(in.sequences.size());
  for (std::size_t q = 0; q < in.sequences.size(); ++q) {
    const SequenceColumn& src = in.sequences[q];
    SequenceColumn& dst = out.sequences[q];
    require(static_cast<Index>(src.offsets.size()) == B + 1, "slice_batch: sequence column ", q, " has ",
            src.offsets.size(), " offsets, expected batch size + 1 = ", B + 1);
    const std::int64_t first = src.offsets[static_cast<std::size_t>(begin)];
    const std::int64_t last = src.offsets[static_cast<std::size_t>(end)];
    require(0 <= first && first <= last && last <= static_cast<std::int64_t>(src.ids.size()), "slice_batch: sequence column ",
            q, ": offsets [", first, ", ", last, ") of rows [", begin, ", ", end, ") not within its ", src.ids.size(), " ids");
    dst.ids.assign(src.ids.begin() + first, src.ids.begin() + last);
    if (src.times.empty()) {
      dst.times.clear();
    } else {
      require(src.times.size() == src.ids.size(), "slice_batch: sequence column ", q, " has ", src.times.size(),
              " times for ", src.ids.size(), " ids");
      dst.times.assign(src.times.begin() + first, src.times.begin() + last);
    }
    dst.offsets.resize(static_cast<std::size_t>(end - begin + 1));
    for (Index r = begin; r <= end; ++r) dst.offsets[static_cast<std::size_t>(r - begin)] = src.offsets[static_cast<std::size_t>(r)] - first;
  }
}

void Dataset::validate() const {
  schema.validate();
  const Index nd = static_cast<Index>(schema.dense.size());
  const Index ns = static_cast<Index>(schema.sparse.size());
  const Index K = schema.num_tasks();
  require(dense.numel() == rows * nd, "dataset: dense has ", dense.numel(), " values, expected rows*num_dense = ", rows * nd);
  require(static_cast<Index>(sparse.size()) == rows * ns, "dataset: sparse has ", sparse.size(),
          " ids, expected rows*num_sparse = ", rows * ns);
  require(labels.numel() == rows * K, "dataset: labels has ", labels.numel(), " values, expected rows*num_tasks = ", rows * K);
  require(label_mask.numel() == 0 || label_mask.numel() == rows * K, "dataset: label_mask size ", label_mask.numel(),
          " != rows*num_tasks = ", rows * K);
  require(oracle.numel() == 0 || oracle.numel() == rows * K, "dataset: oracle size ", oracle.numel(), " != ", rows * K);
  require(user.empty() || static_cast<Index>(user.size()) == rows, "dataset: user has ", user.size(), " rows, expected ", rows);
  require(scene.empty() || static_cast<Index>(scene.size()) == rows, "dataset: scene has ", scene.size(), " rows, expected ", rows);
  for (std::int32_t s : scene)
    if (s < 0 || s >= schema.num_scenes) fail("dataset: scene id ", s, " out of range [0, ", schema.num_scenes, ")");
  require(sequences.size() == schema.sequences.size(), "dataset: ", sequences.size(), " sequence columns, schema has ",
          schema.sequences.size());
  for (Index f = 0; f < ns; ++f) {
    const auto& field = schema.sparse[f];
    if (field.hash || field.oov_row >= 0) continue;  // any id has a row
    for (Index r = 0; r < rows; ++r) {
      const std::int64_t id = sparse[r * ns + f];
      if (id < 0 || id >= field.vocab)
        fail("dataset: sparse field '", field.name, "' row ", r, ": id ", id, " not in [0, ", field.vocab, ")");
    }
  }
  for (std::size_t q = 0; q < sequences.size(); ++q) {
    const auto& s = sequences[q];
    const auto& name = schema.sequences[q].name;
    require(static_cast<Index>(s.offsets.size()) == rows + 1, "sequence '", name, "': offsets has ", s.offsets.size(),
            " entries, expected rows + 1 = ", rows + 1);
    require(s.offsets.front() == 0, "sequence '", name, "': offsets[0] must be 0");
    for (Index r = 0; r < rows; ++r)
      if (s.offsets[r + 1] < s.offsets[r]) fail("sequence '", name, "': offsets decrease at row ", r);
    require(s.offsets.back() == static_cast<std::int64_t>(s.ids.size()), "sequence '", name, "': offsets end at ",
            s.offsets.back(), " but there are ", s.ids.size(), " ids");
    require(s.times.empty() || s.times.size() == s.ids.size(), "sequence '", name, "': times has ", s.times.size(),
            " entries, ids ", s.ids.size());
    const auto t = schema.sequence_table(q);
    const Index vocab = t.vocab;
    if (!t.hash && t.oov_row < 0)
      for (std::size_t i = 0; i < s.ids.size(); ++i)
        if (s.ids[i] < 0 || s.ids[i] >= vocab)
          fail("sequence '", name, "': id ", s.ids[i], " at position ", i, " not in [0, ", vocab, ")");
  }
}

Dataset Dataset::subset(Index begin, Index end) const {
  require(0 <= begin && begin <= end && end <= rows, "Dataset::subset: [", begin, ", ", end, ") not within [0, ", rows, ")");
  std::vector<Index> idx(static_cast<std::size_t>(end - begin));
  std::iota(idx.begin(), idx.end(), begin);
  return take(idx);
}

Dataset Dataset::take(const std::vector<Index>& idx) const {
  Batch b;
  gather(idx, b);
  Dataset d;
  d.schema = schema;
  d.rows = static_cast<Index>(idx.size());
  d.dense = std::move(b.dense);
  d.sparse = std::move(b.sparse);
  d.sequences = std::move(b.sequences);
  d.labels = std::move(b.labels);
  d.label_mask = std::move(b.label_mask);
  if (!user.empty()) d.user = std::move(b.user);
  if (!scene.empty()) d.scene = std::move(b.scene);
  if (oracle.numel()) d.oracle = std::move(b.oracle);
  return d;
}

Dataset select_tasks(const Dataset& d, const std::vector<std::string>& tasks) {
  require(!tasks.empty(), "select_tasks: expected at least one task name");
  const Index K = d.schema.num_tasks(), N = d.rows, J = static_cast<Index>(tasks.size());
  std::vector<Index> cols;
  for (const auto& name : tasks) {
    Index k = -1;
    for (Index i = 0; i < K; ++i)
      if (d.schema.tasks[i].name == name) k = i;
    if (k < 0) {
      std::string list;
      for (auto& t : d.schema.tasks) list += (list.empty() ? "" : ", ") + t.name;
      fail("select_tasks: unknown task \"", name, "\" (expected one of: ", list, ")");
    }
    for (Index c : cols) require(c != k, "select_tasks: task \"", name, "\" is listed twice");
    cols.push_back(k);
  }
  Dataset out = d;
  out.schema.tasks.clear();
  for (Index c : cols) out.schema.tasks.push_back(d.schema.tasks[c]);
  auto pick = [&](const Tensor& src, Tensor& dst) {
    if (src.numel() == 0) return;  // an absent column (label_mask / oracle) stays absent
    require(src.numel() == N * K, "select_tasks: a label column holds ", src.numel(), " values, expected ", N, " x ", K);
    dst = Tensor(Shape{N, J});
    for (Index r = 0; r < N; ++r)
      for (Index j = 0; j < J; ++j) dst[r * J + j] = src[r * K + cols[static_cast<std::size_t>(j)]];
  };
  pick(d.labels, out.labels);
  pick(d.label_mask, out.label_mask);
  pick(d.oracle, out.oracle);
  return out;
}

}  // namespace mtrank::data
