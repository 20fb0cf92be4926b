#include "mtrank/data/csv.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "data/text_util.hpp"

namespace mtrank::data {

std::string read_text_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("cannot open '", file.string(), "' for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("error while reading '", file.string(), "'");
  return ss.str();
}

void for_each_csv_record(std::string_view text, const std::string& source, const CsvOptions& opt,
                         const std::function<void(Index, const std::vector<std::string>&)>& fn) {
  const char delim = opt.delimiter;
  const char quote = opt.quote;
  std::vector<std::string> cells;
  std::size_t ncells = 0;
  std::size_t pos = 0;
  const std::size_t n = text.size();
  Index line = 1;
  auto next_cell = [&]() -> std::string& {
    if (ncells == cells.size()) cells.emplace_back();
    std::string& c = cells[ncells++];
    c.clear();
    return c;
  };
  while (pos < n) {
    const Index record_line = line;
    // Comment lines.
    if (!opt.comment_prefix.empty() && text.substr(pos, opt.comment_prefix.size()) == opt.comment_prefix) {
      std::size_t e = text.find('\n', pos);
      pos = e == std::string_view::npos ? n : e + 1;
      ++line;
      continue;
    }
    ncells = 0;
    bool any_quoted = false;
    for (;;) {
      std::string& cell = next_cell();
      // Leading blanks before a possible quote.
      std::size_t p = pos;
      if (opt.trim)
        while (p < n && text[p] != delim && (text[p] == ' ' || text[p] == '\t')) ++p;
      if (quote && p < n && text[p] == quote) {
        any_quoted = true;
        const Index open_line = line;
        ++p;
        for (;;) {
          if (p >= n) fail(source, ":", open_line, ": unterminated quoted field");
          const char c = text[p];
          if (c == quote) {
            if (p + 1 < n && text[p + 1] == quote) {
              cell.push_back(quote);
              p += 2;
              continue;
            }
            ++p;
            break;
          }
          if (c == '\n') ++line;
          cell.push_back(c);
          ++p;
        }
        while (p < n && text[p] != delim && (text[p] == ' ' || text[p] == '\t' || text[p] == '\r')) ++p;
        if (p < n && text[p] != delim && text[p] != '\n')
          fail(source, ":", line, ": unexpected character '", text[p], "' after a closing quote (column ", ncells, ")");
      } else {
        std::size_t e = p;
        while (e < n && text[e] != delim && text[e] != '\n') ++e;
        std::string_view v = text.substr(p, e - p);
        if (!v.empty() && v.back() == '\r' && (e == n || text[e] == '\n')) v.remove_suffix(1);
        if (opt.trim) v = detail::trim(v);
        cell.assign(v.data(), v.size());
        p = e;
      }
      if (p < n && text[p] == delim) {
        pos = p + 1;
        continue;
      }
      // End of record (newline or end of text).
      pos = p < n ? p + 1 : n;
      ++line;
      break;
    }
    if (ncells == 1 && cells[0].empty() && !any_quoted) continue;  // blank line
    cells.resize(ncells);
    fn(record_line, cells);
  }
}

namespace {

struct Column {
  int index = -1;
  std::string name;  // for messages
};

std::string describe(const Column& c) {
  return "column '" + c.name + "' (#" + std::to_string(c.index) + ")";
}

}  // namespace

Dataset parse_csv(std::string_view text, const std::string& source, const FeatureSchema& schema, const CsvOptions& opt) {
  schema.validate();
  // A UTF-8 byte-order mark (spreadsheet exports) is not part of the first column's name.
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  const Index ns = static_cast<Index>(schema.sparse.size());
  const Index nd = static_cast<Index>(schema.dense.size());
  const Index nq = static_cast<Index>(schema.sequences.size());
  const Index K = schema.num_tasks();

  std::vector<std::string> names = opt.column_names;
  bool have_header = !opt.header;  // when there is no header row the names (if any) are known already
  Index expected_cols = names.empty() ? -1 : static_cast<Index>(names.size());

  std::vector<Column> sparse_col, dense_col, seq_col, label_col;
  Column user_col, scene_col;
  std::vector<std::function<float(std::string_view)>> label_fn(static_cast<std::size_t>(K));
  std::vector<IdParse> sparse_parse, seq_parse;
  std::vector<Index> seq_vocab, sparse_vocab;
  std::vector<const std::function<float(float)>*> dense_fn;

  auto resolve = [&](const std::string& ref, const std::string& what) -> Column {
    Column c;
    c.name = ref;
    if (ref.size() > 1 && ref[0] == '#') {
      std::int64_t k = -1;
      if (!detail::parse_int(std::string_view(ref).substr(1), k) || k < 0)
        fail(source, ": ", what, ": bad column reference '", ref, "' (expected a name or #k)");
      if (expected_cols >= 0 && k >= expected_cols)
        fail(source, ": ", what, ": column #", k, " out of range, the file has ", expected_cols, " columns");
      c.index = static_cast<int>(k);
      if (k < static_cast<Index>(names.size())) c.name = names[static_cast<std::size_t>(k)];
      return c;
    }
    auto it = std::find(names.begin(), names.end(), ref);
    if (it == names.end()) {
      std::string have;
      for (std::size_t i = 0; i < names.size() && i < 50; ++i) have += (i ? ", " : "") + names[i];
      fail(source, ": ", what, ": no column named '", ref, "'", names.empty() ? " (the file has no header and no column_names)" : "",
           names.empty() ? "" : "; columns are: ", have);
    }
    c.index = static_cast<int>(it - names.begin());
    return c;
  };
  auto mapped = [&](const std::string& field) {
    auto it = opt.columns.find(field);
    return it == opt.columns.end() ? field : it->second;
  };
  auto id_mode = [&](const std::string& field, bool hash) {
    auto it = opt.id_parse.find(field);
    IdParse m = it == opt.id_parse.end() ? IdParse::automatic : it->second;
    if (m == IdParse::automatic) m = hash ? IdParse::text : IdParse::integer;
    return m;
  };
  bool resolved = false;
  auto resolve_all = [&]() {
    for (const auto& f : schema.sparse) {
      sparse_col.push_back(resolve(mapped(f.name), "sparse field '" + f.name + "'"));
      sparse_parse.push_back(id_mode(f.name, f.hash));
      sparse_vocab.push_back(f.hash || f.oov_row >= 0 ? -1 : f.vocab);
    }
    for (const auto& f : schema.dense) {
      dense_col.push_back(resolve(mapped(f.name), "dense field '" + f.name + "'"));
      auto it = opt.dense_transform.find(f.name);
      dense_fn.push_back(it == opt.dense_transform.end() ? nullptr : &it->second);
    }
    for (const auto& f : schema.sequences) {
      seq_col.push_back(resolve(mapped(f.name), "sequence field '" + f.name + "'"));
      const auto t = schema.sequence_table(seq_col.size() - 1);
      seq_parse.push_back(id_mode(f.name, t.hash));
      seq_vocab.push_back(t.hash || t.oov_row >= 0 ? -1 : t.vocab);
    }
    label_col.resize(static_cast<std::size_t>(K));
    std::vector<bool> seen(static_cast<std::size_t>(K), false);
    for (const auto& l : opt.labels) {
      Index k = -1;
      for (Index t = 0; t < K; ++t)
        if (schema.tasks[t].name == l.task) k = t;
      if (k < 0) fail(source, ": label for unknown task '", l.task, "'");
      label_col[k] = resolve(l.column, "label of task '" + l.task + "'");
      label_fn[k] = l.transform;
      seen[k] = true;
    }
    for (Index t = 0; t < K; ++t)
      if (!seen[t]) label_col[t] = resolve(schema.tasks[t].name, "label of task '" + schema.tasks[t].name + "'");
    if (!opt.user_column.empty()) user_col = resolve(opt.user_column, "user column");
    if (!opt.scene_column.empty()) scene_col = resolve(opt.scene_column, "scene column");
    resolved = true;
  };

  auto is_missing = [&](const std::string& v) {
    return std::find(opt.missing_values.begin(), opt.missing_values.end(), v) != opt.missing_values.end();
  };

  std::vector<float> dense;
  std::vector<float> labels, mask;
  std::vector<std::int64_t> sparse, user;
  std::vector<std::int32_t> scene;
  std::vector<SequenceColumn> seqs(static_cast<std::size_t>(nq));
  Index rows = 0;
  bool done = false;

  auto to_id = [&](const std::string& cell, IdParse mode, Index vocab, Index line, const Column& c,
                   const std::string& field) -> std::int64_t {
    if (mode == IdParse::text) return id_from_text(is_missing(cell) ? std::string_view() : std::string_view(cell));
    if (is_missing(cell)) {
      if (opt.sparse_missing == MissingPolicy::error)
        fail(source, ":", line, ": ", describe(c), ": missing value for sparse field '", field, "'");
      return opt.sparse_fill_id;
    }
    std::int64_t id = 0;
    if (!detail::parse_int(cell, id))
      fail(source, ":", line, ": ", describe(c), ": cannot parse '", cell, "' as an integer id for field '", field, "'");
    if (vocab > 0 && (id < 0 || id >= vocab))
      fail(source, ":", line, ": ", describe(c), ": id ", id, " of field '", field, "' not in [0, ", vocab, ")");
    return id;
  };

  for_each_csv_record(text, source, opt, [&](Index line, const std::vector<std::string>& cells) {
    if (done) return;
    const Index ncol = static_cast<Index>(cells.size());
    if (!have_header) {
      names.assign(cells.begin(), cells.end());
      expected_cols = ncol;
      have_header = true;
      return;
    }
    if (expected_cols < 0) expected_cols = ncol;
    if (ncol != expected_cols)
      fail(source, ":", line, ": expected ", expected_cols, " columns, got ", ncol);
    if (!resolved) resolve_all();

    for (Index f = 0; f < ns; ++f) {
      const auto& field = schema.sparse[f];
      sparse.push_back(to_id(cells[sparse_col[f].index], sparse_parse[f], sparse_vocab[f], line,
                             sparse_col[f], field.name));
    }
    for (Index f = 0; f < nd; ++f) {
      const std::string& cell = cells[dense_col[f].index];
      double v = 0;
      if (is_missing(cell)) {
        if (opt.dense_missing == MissingPolicy::error)
          fail(source, ":", line, ": ", describe(dense_col[f]), ": missing value for dense field '", schema.dense[f].name, "'");
        dense.push_back(opt.dense_fill);
        continue;
      }
      if (!detail::parse_float(cell, v))
        fail(source, ":", line, ": ", describe(dense_col[f]), ": cannot parse '", cell, "' as a number for dense field '",
             schema.dense[f].name, "'");
      if (!std::isfinite(v)) {
        if (opt.dense_missing == MissingPolicy::error)
          fail(source, ":", line, ": ", describe(dense_col[f]), ": non-finite value '", cell, "' for dense field '",
               schema.dense[f].name, "'");
        dense.push_back(opt.dense_fill);
        continue;
      }
      float x = static_cast<float>(v);
      if (dense_fn[f]) {
        x = (*dense_fn[f])(x);
        if (!std::isfinite(x))
          fail(source, ":", line, ": ", describe(dense_col[f]), ": transform of '", cell, "' for dense field '",
               schema.dense[f].name, "' is not finite");
      }
      dense.push_back(x);
    }
    std::vector<std::string_view> toks;
    for (Index q = 0; q < nq; ++q) {
      const std::string& cell = cells[seq_col[q].index];
      auto& col = seqs[q];
      if (!is_missing(cell)) {
        detail::split(cell, opt.sequence_delimiter, toks);
        for (auto t : toks) {
          std::string tok(detail::trim(t));
          if (tok.empty()) continue;
          col.ids.push_back(to_id(tok, seq_parse[q], seq_vocab[q], line, seq_col[q], schema.sequences[q].name));
        }
      }
      // Keep the most recent max_len items (the end of the list).
      const Index begin = col.offsets.back();
      const Index len = static_cast<Index>(col.ids.size()) - begin;
      const Index keep = schema.sequences[q].max_len;
      if (len > keep) col.ids.erase(col.ids.begin() + begin, col.ids.begin() + begin + (len - keep));
      col.offsets.push_back(static_cast<std::int64_t>(col.ids.size()));
    }
    for (Index k = 0; k < K; ++k) {
      const std::string& cell = cells[label_col[k].index];
      if (is_missing(cell) && !label_fn[k]) {
        if (opt.label_missing == MissingPolicy::error)
          fail(source, ":", line, ": ", describe(label_col[k]), ": missing label for task '", schema.tasks[k].name, "'");
        labels.push_back(0.0f);
        mask.push_back(0.0f);
        continue;
      }
      float y = 0;
      if (label_fn[k]) {
        y = label_fn[k](cell);
      } else {
        double v = 0;
        if (!detail::parse_float(cell, v) || !std::isfinite(v))
          fail(source, ":", line, ": ", describe(label_col[k]), ": cannot parse '", cell, "' as a label for task '",
               schema.tasks[k].name, "'");
        y = static_cast<float>(v);
      }
      if (!std::isfinite(y))
        fail(source, ":", line, ": ", describe(label_col[k]), ": cannot map '", cell, "' to a label for task '",
             schema.tasks[k].name, "'");
      if (schema.tasks[k].kind == TaskKind::binary && y != 0.0f && y != 1.0f)
        fail(source, ":", line, ": ", describe(label_col[k]), ": binary task '", schema.tasks[k].name,
             "' expects a 0/1 label, got '", cell, "'");
      labels.push_back(y);
      mask.push_back(1.0f);
    }
    if (user_col.index >= 0) {
      const std::string& cell = cells[user_col.index];
      user.push_back(id_from_text(cell));
    } else {
      user.push_back(rows);
    }
    if (scene_col.index >= 0) {
      const std::string& cell = cells[scene_col.index];
      std::int64_t s = 0;
      if (!detail::parse_int(cell, s) || s < 0 || s >= schema.num_scenes)
        fail(source, ":", line, ": ", describe(scene_col), ": scene '", cell, "' is not an integer in [0, ",
             schema.num_scenes, ")");
      scene.push_back(static_cast<std::int32_t>(s));
    }
    ++rows;
    if (opt.max_rows >= 0 && rows >= opt.max_rows) done = true;
  });
  if (!have_header) fail(source, ": empty file (expected a header row)");
  if (rows > 0 && !resolved) resolve_all();

  Dataset d;
  d.schema = schema;
  d.rows = rows;
  d.dense.resize(Shape{rows, nd});
  if (!dense.empty()) std::memcpy(d.dense.data(), dense.data(), sizeof(float) * dense.size());
  d.sparse = std::move(sparse);
  d.sequences = std::move(seqs);
  d.labels.resize(Shape{rows, K});
  if (!labels.empty()) std::memcpy(d.labels.data(), labels.data(), sizeof(float) * labels.size());
  d.label_mask.resize(Shape{rows, K});
  if (!mask.empty()) std::memcpy(d.label_mask.data(), mask.data(), sizeof(float) * mask.size());
  d.user = std::move(user);
  if (!scene.empty()) d.scene = std::move(scene);
  d.validate();
  return d;
}

Dataset read_csv(const std::filesystem::path& file, const FeatureSchema& schema, const CsvOptions& options) {
  const std::string text = read_text_file(file);
  return parse_csv(text, file.string(), schema, options);
}

}  // namespace mtrank::data
