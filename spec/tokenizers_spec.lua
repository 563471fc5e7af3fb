-- tokenizers_spec.lua — the native tokenizers (cocola.models.text.tokenizer) against transformers 4.38.2:
-- spec/fixtures/text/{roberta,gpt2,t5} are small vocabularies trained by spec/fixtures/text/gen_tokenizers.py,
-- and expected.json holds the oracle's ids, decodes and batch encodings. Every prompt is checked with both
-- file sources of a folder (tokenizer.json, and vocab.json + merges.txt or spiece.model); where the slow
-- tokenizer of transformers gives other ids than the fast one (GPT-2's add_prefix_space on text starting
-- with a space) the slow files are checked against the slow tokenizer's ids.
local cjson = require "cjson"
local Tokenizer = require "cocola.models.text.tokenizer"
local bpe = require "cocola.models.text.bpe"

local DIR = "spec/fixtures/text"

local function read_expected()
  local f = assert(io.open(DIR .. "/expected.json", "rb"))
  local t = cjson.decode(f:read("a"))
  f:close()
  return t
end

local expected = read_expected()

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function show(t)
  local s = {}
  for i = 1, math.min(#t, 40) do s[i] = tostring(t[i]) end
  return "{" .. table.concat(s, ",") .. (#t > 40 and (",... (" .. #t .. ")") or "") .. "}"
end

for _, name in ipairs({ "roberta", "gpt2", "t5", "t5_bytes", "t5_ws" }) do
  local exp = expected[name]
  local only_fast = name == "t5_ws" -- tokenizer.json alone
  describe(name .. " tokenizer", function()
    local toks = { fast = Tokenizer.from_pretrained(DIR .. "/" .. name) }
    if not only_fast then toks.slow = Tokenizer.from_pretrained(DIR .. "/" .. name, { files = "slow" }) end

    it("reads model_max_length and picks the kind from the files", function()
      assert.are.equal(exp.model_max_length, toks.fast.model_max_length)
      assert.are.equal(name:match("^t5") and "unigram" or "bpe", toks.fast.kind)
      if toks.slow then
        assert.are.equal(exp.model_max_length, toks.slow.model_max_length)
        assert.are.equal(name:match("^t5") and "spiece.model" or "vocab.json+merges.txt", toks.slow.files)
      end
    end)

    for _, which in ipairs(only_fast and { "fast" } or { "fast", "slow" }) do
      it("encodes every prompt to the oracle's ids (" .. which .. " files)", function()
        local tok, bad = toks[which], {}
        for i, p in ipairs(exp.prompts) do
          local want = (which == "slow" and p.ids_slow) or p.ids
          local text = expected.prompts[i]
          local got = tok:encode(text)
          if not same(got, want) then
            bad[#bad + 1] = string.format("prompt %d %q: got %s want %s", i, text:sub(1, 60), show(got), show(want))
          end
        end
        assert(#bad == 0, table.concat(bad, "\n"))
      end)

      it("encodes batches with padding, truncation and masks like the oracle (" .. which .. " files)", function()
        local tok = toks[which]
        for i, b in ipairs(exp.batches) do
          local spec = expected.batches[i]
          b.texts, b.padding, b.max_length, b.truncation = spec.texts, spec.padding, spec.max_length, spec.truncation
          local enc = tok(b.texts, { padding = b.padding, max_length = b.max_length, truncation = b.truncation })
          local ids, mask = enc.input_ids, enc.attention_mask
          if b.padding ~= false then
            assert.are.equal("int64", ids:dtype())
            assert.are.equal("int64", mask:dtype())
            ids, mask = ids:totable(), mask:totable()
          end
          local want_ids = (which == "slow" and b.input_ids_slow) or b.input_ids
          for r = 1, #b.texts do
            assert(same(ids[r], want_ids[r]), string.format("batch %d row %d: got %s want %s", i, r,
              show(ids[r]), show(want_ids[r])))
            local want_mask = (which == "slow" and b.attention_mask_slow) or b.attention_mask
            assert(same(mask[r], want_mask[r]), string.format("batch %d row %d mask", i, r))
          end
        end
      end)
    end

    it("gives the same ids from both file sources wherever the oracle's fast and slow tokenizers agree", function()
      if only_fast then return end
      local n = 0
      for i, p in ipairs(exp.prompts) do
        local text = expected.prompts[i]
        if not p.ids_slow then
          assert(same(toks.fast:encode(text), toks.slow:encode(text)), string.format("%q", text))
          n = n + 1
        end
      end
      assert(n >= 20, "too few prompts where both sources agree: " .. n)
    end)

    it("decodes the oracle's ids to the oracle's text", function()
      local bad = {}
      for i, p in ipairs(exp.prompts) do
        local d = toks.fast:decode(p.ids)
        local ds = toks.fast:decode(p.ids, { skip_special_tokens = true })
        if d ~= p.decoded then bad[#bad + 1] = string.format("prompt %d: %q vs %q", i, d, p.decoded) end
        local want_skip = p.decoded_skip or p.decoded
        if ds ~= want_skip then bad[#bad + 1] = string.format("prompt %d (skip): %q vs %q", i, ds, want_skip) end
        if toks.slow then assert.are.equal(d, toks.slow:decode(p.ids)) end
      end
      assert(#bad == 0, table.concat(bad, "\n"))
    end)

    it("round-trips text through encode and decode", function()
      for which, tok in pairs(toks) do
        for _, text in ipairs({ "in: bass, drums; out: guitar, piano", "Café 東京 🎸" }) do
          local ids = tok:encode(text)
          local back = tok:decode(ids, { skip_special_tokens = true, clean_up_tokenization_spaces = false })
          if name == "t5" or ((name == "t5_bytes" or name == "t5_ws") and which == "fast") then
            -- the emoji is unknown to the vocabulary (tokenizers has no byte fallback) and <unk> is skipped
            assert.are.equal((text:gsub("🎸", "")), back)
          elseif name == "gpt2" then
            assert.are.equal(" " .. text, back) -- add_prefix_space
          else
            assert.are.equal(text, back) -- byte-level BPE, and spiece.model with byte_fallback
          end
        end
      end
    end)

    it("accepts an int64 tensor in decode and truncates long prompts", function()
      local long = string.rep("in: bass, drums; out: guitar, piano. ", 60)
      local enc = toks.fast({ long }, { padding = "max_length", max_length = 16, truncation = true })
      assert.are.same({ 1, 16 }, { enc.input_ids.shape[1], enc.input_ids.shape[2] })
      local s = toks.fast:decode(enc.input_ids:totable()[1])
      assert.are.equal(s, toks.fast:decode(enc.input_ids:totable()[1]))
    end)

    it("rejects invalid UTF-8 with the byte position", function()
      for _, tok in pairs(toks) do
        local ok, err = pcall(tok.encode, tok, "ab\xffcd")
        assert.is_false(ok)
        assert.truthy(err:find("not valid UTF-8", 1, true), err)
        assert.truthy(err:find("position 3", 1, true), err)
        ok, err = pcall(tok, { "ok", "caf\xc3" }, { padding = "longest" })
        assert.is_false(ok)
        assert.truthy(err:find("position 4", 1, true) and err:find("text 2", 1, true), err)
        -- an overlong encoding and a surrogate are rejected too
        assert.is_false(pcall(tok.encode, tok, "\xc0\xaf"))
        assert.is_false(pcall(tok.encode, tok, "\xed\xa0\x80"))
      end
    end)
  end)
end

describe("tokenizer files", function()
  it("errors on a folder without tokenizer files", function()
    local ok, err = pcall(Tokenizer.from_pretrained, "spec/fixtures/no_such_folder")
    assert.is_false(ok)
    assert.truthy(err:find("no tokenizer files", 1, true), err)
    ok, err = pcall(Tokenizer.from_pretrained, "spec/fixtures/no_such_folder", { files = "fast" })
    assert.is_false(ok)
    assert.truthy(err:find("tokenizer.json: no such file", 1, true), err)
  end)

  it("reads a component subfolder of a pipeline folder", function()
    local tok = Tokenizer.from_pretrained(DIR, { subfolder = "t5" })
    assert.are.same(expected.t5.prompts[1].ids, tok:encode(expected.prompts[1]))
  end)

  it("errors on a malformed spiece.model", function()
    local sp = require "cocola.models.text.sentencepiece_model"
    local ok, err = pcall(sp.parse, "\x0a\x50abc", "bad.model")
    assert.is_false(ok)
    assert.truthy(err:find("bad.model: malformed SentencePiece model", 1, true), err)
  end)
end)

describe("GPT-2 pre-tokenizer", function()
  it("splits like the regex on contractions, letters, numbers and whitespace runs", function()
    assert.are.same({ "Hello", ",", " world", "'s", " 123", "  ", " x", "\n", "\n", "y", " \t" },
      bpe.pretokenize("Hello, world's 123   x\n\ny \t"))
    assert.are.same({ "東京の夜", "、" }, bpe.pretokenize("東京の夜、"))
    assert.are.same({ "Ⅻ", " ½²" }, bpe.pretokenize("Ⅻ ½²"))
  end)
end)
