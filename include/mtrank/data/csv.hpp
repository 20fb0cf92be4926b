// CSV/TSV reader driven by a FeatureSchema plus a column mapping.
//
// Each schema field reads one column (by default the column with the field's name; map it
// elsewhere with CsvOptions::columns, by header name or "#k" for the 0-based k-th column):
//   dense field    -> the cell parsed as a float, then the field's optional transform;
//                     missing/NaN/Inf/unparsable cells throw (or take `dense_fill`).
//   sparse field   -> a raw 64-bit id by the schema's id rule (schema.hpp): for a hashed field
//                     id_from_text(cell) (a decimal integer is itself, other text is hashed as
//                     bytes), the same id a request sending 804 or "804" gets; for a vocabulary
//                     field (hash = false) the integer in the cell, range-checked against vocab
//                     unless the field has an oov_row.
//   sequence field -> the cell split on `sequence_delimiter`, each token turned into an id as
//                     for a sparse field (an empty cell is an empty sequence).
//   task           -> a label column with an optional transform (e.g. v == ">50K").
// Errors name the file, line and column. Quoted fields ("a,b", "say ""hi""", embedded newlines),
// CRLF line ends, blank lines and a missing final newline are handled.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/data/batch.hpp"

namespace mtrank::data {

/// How a sparse/sequence cell becomes an id. automatic = integer for fields with hash = false,
/// text for fields with hash = true. text: id_from_text(cell) (missing cells are the empty text).
enum class IdParse { automatic, integer, text };

enum class MissingPolicy { error, fill };

struct CsvLabel {
  std::string task;    // schema task name
  std::string column;  // header name, or "#k"
  /// Label from the (trimmed, unquoted) cell; empty = parse the cell as a float. Return NaN for
  /// a value that is not a valid label: the reader then throws naming the file, line and cell.
  std::function<float(std::string_view)> transform;
};

struct CsvOptions {
  char delimiter = ',';
  bool header = true;                   // first record names the columns
  std::vector<std::string> column_names;  // names for a header-less file (optional)
  char quote = '"';
  bool trim = true;                     // strip spaces and tabs around unquoted cells
  std::string comment_prefix;           // lines starting with it are skipped ("" = none)
  std::map<std::string, std::string> columns;  // feature name -> column ("name" or "#k")
  std::vector<CsvLabel> labels;         // default: task t reads column t.name as a float
  std::string user_column;              // "" = the row number is the user (GAUC groups of one); else id_from_text(cell)
  std::string scene_column;             // "" = scene 0; else integer in [0, num_scenes)
  std::map<std::string, IdParse> id_parse;  // per sparse/sequence field
  char sequence_delimiter = '|';
  std::vector<std::string> missing_values{""};  // cell texts that mean "missing"
  MissingPolicy dense_missing = MissingPolicy::error;
  float dense_fill = 0.0f;              // value of a missing dense cell under MissingPolicy::fill
  /// Applied to each parsed dense value of the named field (e.g. log1p for counts).
  std::map<std::string, std::function<float(float)>> dense_transform;
  MissingPolicy sparse_missing = MissingPolicy::fill;  // integer ids: fill with sparse_fill_id
  std::int64_t sparse_fill_id = 0;
  MissingPolicy label_missing = MissingPolicy::error;  // fill: label 0 and label_mask 0
  Index max_rows = -1;                  // stop after this many data rows (-1 = all)
};

/// Reads a whole file. Errors name `file`, the line and the column.
Dataset read_csv(const std::filesystem::path& file, const FeatureSchema& schema, const CsvOptions& options = {});
/// Same on text in memory; `source` names it in errors.
Dataset parse_csv(std::string_view text, const std::string& source, const FeatureSchema& schema,
                  const CsvOptions& options = {});

/// Low level: calls fn(line, cells) for every record of `text` that is not blank or a comment
/// (the header included). `line` is the 1-based line where the record starts; cells are unquoted
/// and, when options.trim, trimmed. Throws on an unterminated quote.
void for_each_csv_record(std::string_view text, const std::string& source, const CsvOptions& options,
                         const std::function<void(Index line, const std::vector<std::string>& cells)>& fn);

/// The whole file as a string; throws mtrank::Error naming it when it cannot be read.
std::string read_text_file(const std::filesystem::path& file);

}  // namespace mtrank::data
