using System.Text;
using Lutra.Gguf;

namespace Lutra.Tokenizers.Tests;

/// <summary>Hand-built vocabularies (no shared data needed) with expectations worked out by hand.</summary>
public sealed class SyntheticVocabTests
{
    private static GgufValue Str(string s) => new(GgufValueType.String, new GgufString(s));

    private static GgufValue Strings(IEnumerable<string> items) =>
        new(GgufValueType.Array, items.Select(s => new GgufString(s)).ToArray(), GgufValueType.String);

    private static GgufMetadata Spm(params (string Text, float Score, TokenType Type)[] extra)
    {
        var tokens = new List<(string Text, float Score, TokenType Type)>
        {
            ("<unk>", 0, TokenType.Unknown), ("<s>", 0, TokenType.Control), ("</s>", 0, TokenType.Control),
        };
        for (var b = 0; b < 256; b++)
            tokens.Add(($"<0x{b:X2}>", 0, TokenType.Byte));
        tokens.AddRange(extra);
        var m = new GgufMetadata();
        m.Set("tokenizer.ggml.model", Str("llama"));
        m.Set("tokenizer.ggml.tokens", Strings(tokens.Select(t => t.Text)));
        m.Set("tokenizer.ggml.scores", new GgufValue(GgufValueType.Array, tokens.Select(t => t.Score).ToArray(), GgufValueType.Float32));
        m.Set("tokenizer.ggml.token_type", new GgufValue(GgufValueType.Array, tokens.Select(t => (int)t.Type).ToArray(), GgufValueType.Int32));
        return m;
    }

    private const int FirstExtra = 3 + 256;

    [Fact]
    public void Spm_merges_by_score_and_falls_back_to_bytes()
    {
        // ▁=259 a=260 b=261 ▁a=262 ab=263 ▁ab=264. "ab" → "▁ab": pairs ▁a (score -1) and ab (-2); ▁a wins, then
        // ▁a+b = ▁ab. With ab scored higher instead, a+b merges first and ▁+ab = ▁ab as well.
        var t = Tokenizer.FromGguf(Spm(("\u2581", -5, TokenType.Normal), ("a", -5, TokenType.Normal), ("b", -5, TokenType.Normal),
            ("\u2581a", -1, TokenType.Normal), ("ab", -2, TokenType.Normal), ("\u2581ab", -3, TokenType.Normal)));
        Assert.Equal([1, FirstExtra + 5], t.Encode("ab"));
        // "é" (C3 A9) is not in the vocabulary: byte tokens <0xC3> <0xA9> after ▁
        Assert.Equal([FirstExtra, 3 + 0xC3, 3 + 0xA9], t.Encode("é", addSpecial: false));
        Assert.Equal("é", t.Decode(t.Encode("é", addSpecial: false)));
        // "ba": b, a; no pair token → ▁ b a
        Assert.Equal([FirstExtra, FirstExtra + 2, FirstExtra + 1], t.Encode("ba", addSpecial: false));
    }

    [Fact]
    public void Spm_score_ties_go_to_the_leftmost_pair()
    {
        // "aaa" with only "aa" known: pairs (0,1) and (1,2) tie; the left one merges → aa a. (no space prefix)
        var m = Spm(("a", -5, TokenType.Normal), ("aa", -1, TokenType.Normal));
        m.Set("tokenizer.ggml.add_space_prefix", new GgufValue(GgufValueType.Bool, false));
        var t = Tokenizer.FromGguf(m);
        Assert.False(t.AddSpacePrefix);
        Assert.Equal([FirstExtra + 1, FirstExtra], t.Encode("aaa", addSpecial: false));
    }

    private static GgufMetadata Bpe(string pre, string[] extraTokens, string[] merges)
    {
        // GPT-2 bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest take U+0100.. in order
        var next = 0x100;
        var tokens = Enumerable.Range(0, 256).Select(b =>
            char.ConvertFromUtf32(b is >= 0x21 and <= 0x7E or >= 0xA1 and <= 0xAC or >= 0xAE ? b : next++)).ToList();
        tokens.AddRange(extraTokens);
        var m = new GgufMetadata();
        m.Set("tokenizer.ggml.model", Str("gpt2"));
        m.Set("tokenizer.ggml.pre", Str(pre));
        m.Set("tokenizer.ggml.tokens", Strings(tokens));
        m.Set("tokenizer.ggml.merges", Strings(merges));
        return m;
    }

    [Fact]
    public void Bpe_merges_lowest_rank_first()
    {
        // byte tokens are ids 0..255 in byte order; extras follow: he=256 ll=257 hell=258 hello=259
        var t = Tokenizer.FromGguf(Bpe("gpt-2", ["he", "ll", "hell", "hello"], ["h e", "l l", "he ll", "hell o"]));
        Assert.Equal([259], t.Encode("hello"));
        // " hello": the piece starts with Ġ, which has no merge with h → Ġ hello
        Assert.Equal([259, ' ', 259], t.Encode("hello hello"));
        Assert.Equal("hello hello", t.Decode([259, ' ', 259]));
        // "lle": l l → ll, then e alone
        Assert.Equal([257, 'e'], t.Encode("lle"));
        Assert.Equal(TokenizerKind.Bpe, t.Kind);
        Assert.False(t.AddBos);
    }

    [Fact]
    public void Bpe_decode_cleans_spaces_like_llama_cpp()
    {
        var t = Tokenizer.FromGguf(Bpe("gpt-2", [], []));
        var ids = t.Encode("a , b ' c 's 't", addSpecial: false);
        Assert.True(t.CleanSpaces);
        Assert.Equal("a, b'c's 't", t.Decode(ids));
    }

    [Fact]
    public void Unknown_pre_tokenizer_is_a_clear_error()
    {
        var e = Assert.Throws<NotSupportedException>(() => Tokenizer.FromGguf(Bpe("no-such-pre", [], [])));
        Assert.Contains("no-such-pre", e.Message);
    }

    [Theory]
    [InlineData("tekken")]
    [InlineData("chameleon")]
    [InlineData("qwen2")]
    [InlineData("deepseek-v3")]
    [InlineData("bloom")]
    [InlineData("viking")]
    [InlineData("llama-bpe")]
    [InlineData("starcoder")]
    [InlineData("default")]
    public void Every_pre_tokenizer_round_trips_text(string pre)
    {
        var t = Tokenizer.FromGguf(Bpe(pre, [], []));
        const string text = "Hello, World! 12345 don't\n\n  tabs\there ünï 日本語 🦙 IMGIMGABZ <sentinel:3>";
        Assert.Equal(text, Encoding.UTF8.GetString(t.DecodeToUtf8(t.Encode(text, addSpecial: false))));
    }

    [Fact]
    public void Missing_merges_and_unsupported_models_are_clear_errors()
    {
        var m = Bpe("gpt-2", [], []);
        m.Remove("tokenizer.ggml.merges");
        Assert.Throws<InvalidDataException>(() => Tokenizer.FromGguf(m));
        m.Set("tokenizer.ggml.model", Str("t5"));
        Assert.Throws<NotSupportedException>(() => Tokenizer.FromGguf(m));
        m.Remove("tokenizer.ggml.model");
        Assert.Throws<InvalidDataException>(() => Tokenizer.FromGguf(m));
    }

    [Fact]
    public void Streaming_holds_back_a_character_split_across_byte_tokens()
    {
        var t = Tokenizer.FromGguf(Spm(("\u2581", -5, TokenType.Normal), ("a", -5, TokenType.Normal)));
        var stream = new StreamingDetokenizer(t);
        // 🦙 = F0 9F A6 99
        Assert.Equal("a", stream.Append(FirstExtra + 1));
        Assert.Equal("", stream.Append(3 + 0xF0));
        Assert.Equal("", stream.Append(3 + 0x9F));
        Assert.Equal("", stream.Append(3 + 0xA6));
        Assert.Equal("🦙", stream.Append(3 + 0x99));
        Assert.Equal(" ", stream.Append(FirstExtra));
        Assert.Equal("", stream.Append(3 + 0xE2));
        Assert.Equal("\uFFFD", stream.Flush());
        Assert.Equal("", stream.Append(1)); // <s> is not rendered by default
    }

    [Fact]
    public void Phi3_special_tokens_swallow_whitespace_after_them()
    {
        var m = Spm(("<|user|>", 0, TokenType.Control), ("\u2581", -5, TokenType.Normal), ("a", -5, TokenType.Normal));
        var plain = Tokenizer.FromGguf(m).Encode("<|user|>\n a", addSpecial: false, parseSpecial: true);
        m.Set("general.name", Str("Phi-3 mini"));
        var phi3 = Tokenizer.FromGguf(m).Encode("<|user|>\n a", addSpecial: false, parseSpecial: true);
        // without RSTRIP: <|user|> ▁ <0x0A> ▁ a ; with it the "\n " is gone: <|user|> ▁ a
        Assert.Equal([FirstExtra, FirstExtra + 1, 3 + 0x0A, FirstExtra + 1, FirstExtra + 2], plain);
        Assert.Equal([FirstExtra, FirstExtra + 1, FirstExtra + 2], phi3);
    }

    [Fact]
    public void End_of_generation_includes_tokens_found_by_text()
    {
        var t = Tokenizer.FromGguf(Spm(("<|im_end|>", 0, TokenType.Normal)));
        var imEnd = FirstExtra;
        Assert.True(t.IsEndOfGeneration(imEnd));
        Assert.True(t.IsEndOfGeneration(t.Eos));
        Assert.Equal(imEnd, t.Eot);
        Assert.Equal(TokenType.Control, t.GetTokenType(imEnd)); // promoted, as llama.cpp does
    }
}
