// The one JSON string escaper of kvtier: the daemon's JSON logs and
// /v1/stats, the CLI's --json output and kvtier-bench's reports all use it,
// so each writes valid JSON whatever bytes a message, a path or a file name
// holds. Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace kvtier {

// Appends `s` escaped for the inside of a JSON string (no surrounding
// quotes): \" \\ \n \r \t \b \f, other control characters as \u00XX, invalid
// UTF-8 bytes (stray continuation bytes, truncated or overlong sequences,
// surrogates, code points past U+10FFFF) as \ufffd, one per byte; valid UTF-8
// passes through unchanged.
void AppendJsonEscaped(std::string_view s, std::string* out);

// `s` as a JSON string: escaped as above, in double quotes.
std::string JsonQuoted(std::string_view s);

}  // namespace kvtier
