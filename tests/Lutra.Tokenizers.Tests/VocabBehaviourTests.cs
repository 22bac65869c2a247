using System.Text;
using Lutra.Tests;

namespace Lutra.Tokenizers.Tests;

/// <summary>Behaviour on llama.cpp's vocab-only GGUFs beyond the .inp/.out vectors.</summary>
public sealed class VocabBehaviourTests
{
    private static Tokenizer Load(string vocab) => Tokenizer.FromGgufFile(SharedData.Require($"tokenizer/ggml-vocab-{vocab}.gguf"));

    [Theory]
    [InlineData("baichuan", TokenizerKind.Spm, 64000)]
    [InlineData("gpt-neox", TokenizerKind.Bpe, 50432)]
    public void Vocabs_without_vectors_load_and_round_trip(string vocab, TokenizerKind kind, int size)
    {
        var tokenizer = Load(vocab);
        Assert.Equal(kind, tokenizer.Kind);
        Assert.Equal(size, tokenizer.VocabSize);
        const string text = "Hello world, this is a test: 1234 + 5678 = 6912.\n\tNew line!";
        var ids = tokenizer.Encode(text, addSpecial: false);
        Assert.NotEmpty(ids);
        Assert.Equal(text, tokenizer.Decode(ids));
    }

    [Fact]
    public void Absent_pre_tokenizer_falls_back_to_default()
    {
        Assert.Equal("default", Load("gpt-neox").PreTokenizer);
    }

    // Byte-level BPE without clean-up and SPM are exact inverses of llama.cpp's encoder on these strings.
    [Theory]
    [InlineData("llama-spm")]
    [InlineData("deepseek-coder")]
    [InlineData("deepseek-llm")]
    public void Decode_inverts_encode_on_the_test_strings(string vocab)
    {
        var tokenizer = Load(vocab);
        foreach (var (text, ids) in VocabVectorTests.LoadCases(vocab))
            Assert.Equal(text, tokenizer.Decode(ids));
    }

    [Fact]
    public void Control_tokens_are_parsed_only_when_asked()
    {
        var tokenizer = Load("llama-spm");
        var plain = tokenizer.Encode("<s>hi", addSpecial: false, parseSpecial: false);
        var parsed = tokenizer.Encode("<s>hi", addSpecial: false, parseSpecial: true);
        Assert.DoesNotContain(tokenizer.Bos, plain);
        Assert.Equal(tokenizer.Bos, parsed[0]);
        // After a special token SPM adds the space prefix again: "<s>hi" → <s> ▁hi
        Assert.Equal(tokenizer.Encode("hi", addSpecial: false), parsed[1..]);
    }

    [Fact]
    public void Control_tokens_render_only_when_asked()
    {
        var tokenizer = Load("llama-spm");
        int[] ids = [tokenizer.Bos, .. tokenizer.Encode("Hi", addSpecial: false)];
        // llama_detokenize strips the SPM prefix space from the first piece, except after removing a leading BOS.
        Assert.Equal(" Hi", tokenizer.Decode(ids, removeSpecial: true));
        Assert.Equal("Hi", tokenizer.Decode(ids[1..]));
        Assert.Equal("<s> Hi", tokenizer.Decode(ids, unparseSpecial: true));
        Assert.Equal(" Hi", tokenizer.Decode(ids));
    }

    [Fact]
    public void User_defined_tokens_match_even_without_special_parsing()
    {
        var tokenizer = Load("mpt");
        var userDefined = Enumerable.Range(0, tokenizer.VocabSize)
            .Where(id => tokenizer.GetTokenType(id) == TokenType.UserDefined)
            .Select(id => (Id: id, Text: Encoding.UTF8.GetString(tokenizer.GetTokenText(id))))
            .FirstOrDefault(t => t.Text.Trim().Length > 0 && !t.Text.Contains(' '));
        Assert.SkipWhen(userDefined.Text is null, "mpt vocab has no printable user-defined token");
        var ids = tokenizer.Encode("x" + userDefined.Text + "x", addSpecial: false, parseSpecial: false);
        Assert.Contains(userDefined.Id, ids);
    }

    [Fact]
    public void Wpm_adds_cls_and_sep()
    {
        var tokenizer = Load("bert-bge");
        var ids = tokenizer.Encode("hello", addSpecial: true);
        Assert.Equal(101, ids[0]);
        Assert.Equal(102, ids[^1]);
    }

    [Fact]
    public void Encode_into_a_span_reports_the_needed_size()
    {
        var tokenizer = Load("gpt-2");
        var expected = tokenizer.Encode("Hello world", addSpecial: false);
        Span<int> small = stackalloc int[1];
        Assert.Equal(-expected.Length, tokenizer.Encode("Hello world", small, addSpecial: false));
        Span<int> big = stackalloc int[16];
        Assert.Equal(expected.Length, tokenizer.Encode("Hello world", big, addSpecial: false));
        Assert.Equal(expected, big[..expected.Length].ToArray());
    }
}
