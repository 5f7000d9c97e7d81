// SHA-256 against the FIPS 180-2 examples (empty, "abc", the 448-bit message, a million 'a's, so
// every padding case: one block, two blocks, many), in pieces of every size, and sha256_file
// against sha256_hex on a file read in chunks, plus the error for a missing file.
#include <fstream>
#include <string>

#include "core/error.h"
#include "io/sha256.h"
#include "test/catch.h"
#include "test/temp_dir.h"

using nd::io::Sha256;
using nd::io::sha256_file;
using nd::io::sha256_hex;

TEST_CASE("sha256 matches the FIPS 180-2 examples", "[io]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex(std::string(1000000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256 gives the same digest whatever the pieces", "[io]") {
  std::string text;
  for (int i = 0; i < 300; ++i) text += char('a' + (i * 7) % 26);
  const std::string whole = sha256_hex(text);
  for (size_t piece : {1, 3, 55, 56, 63, 64, 65, 128, 299}) {
    Sha256 h;
    for (size_t at = 0; at < text.size(); at += piece)
      h.update(text.data() + at, std::min(piece, text.size() - at));
    CHECK(h.hex_digest() == whole);
  }
}

TEST_CASE("sha256_file hashes the file's bytes and names a missing file", "[io]") {
  nd::test::TempDir dir("sha256");
  std::string bytes;
  for (int i = 0; i < (3 << 20) + 17; ++i) bytes += char(i * 131 % 251);
  std::ofstream(dir.file("w.bin"), std::ios::binary) << bytes;
  CHECK(sha256_file(dir.file("w.bin")) == sha256_hex(bytes));
  CHECK_THROWS_WITH(sha256_file(dir.file("none.bin")), Catch::Contains("none.bin"));
}
