using System.Text;
using System.Text.Json;
using Lutra.Tests;

namespace Lutra.Tokenizers.Tests;

/// <summary>Token ids llama.cpp produced for real models (../shared/reference), and its decoded text.</summary>
public sealed class ReferenceTokenTests
{
    private static int[] ReadIds(string relativePath) =>
        [.. File.ReadAllText(SharedData.Require(relativePath)).Split((char[])[' ', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries).Select(int.Parse)];

    private static Tokenizer Load(string model) => Tokenizer.FromGgufFile(SharedData.Model(model));

    private const string StoryParagraph =
        "Tom had a small red boat. Every day he took it to the pond near his house. One morning, a duck swam up to the boat and said, \"Can I ride with you?\" Tom laughed and said yes. They floated across the water together and sang a happy song.";

    [Fact]
    public void Story_file_matches_llama_perplexity_tokens()
    {
        var text = File.ReadAllText(SharedData.Require("reference/perplexity/story.txt"), Encoding.UTF8);
        // The reference ids end with <0x0A>: the file's single trailing newline was tokenized too.
        var expected = ReadIds("reference/perplexity/story.stories260K.tokens.txt");
        var actual = Load("stories260K.gguf").Encode(text, addSpecial: true);
        Assert.Equal(8178, expected.Length);
        Assert.Equal(expected, actual);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Prompt_matches_llama_cpp(bool parseSpecial)
    {
        var tokenizer = Load("stories260K.gguf");
        Assert.Equal([1, 403, 407, 261, 378], tokenizer.Encode("Once upon a time", addSpecial: true, parseSpecial));
    }

    [Theory]
    [InlineData("stories260K.gguf", StoryParagraph)]
    [InlineData("llama-2-tiny-random.gguf",
        "Tom had a small red boat. Every day he took it to the pond near his house, and one morning a duck swam up to say hello.")]
    public void Logit_reference_paragraphs_tokenize_as_llama_cpp(string model, string paragraph)
    {
        var stem = Path.GetFileNameWithoutExtension(model);
        var expected = ReadIds($"reference/logits/{stem}.tokens.txt");
        Assert.Equal(expected, Load(model).Encode(paragraph));
    }

    [Fact]
    public void Generated_tokens_decode_to_llama_cpp_text()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(SharedData.Require("reference/generate/stories260K.greedy.json")));
        var root = json.RootElement;
        int[] prompt = [.. root.GetProperty("prompt_tokens").EnumerateArray().Select(e => e.GetInt32())];
        int[] generated = [.. root.GetProperty("generated_tokens").EnumerateArray().Select(e => e.GetInt32())];
        var tokenizer = Load("stories260K.gguf");

        // text = concatenated token_to_piece(special = true) of the generated tokens
        var stream = new StreamingDetokenizer(tokenizer, renderSpecial: true);
        var streamed = new StringBuilder();
        foreach (var id in generated)
            streamed.Append(stream.Append(id));
        streamed.Append(stream.Flush());
        Assert.Equal(root.GetProperty("text").GetString(), streamed.ToString());

        // full_text: llama_detokenize of prompt (without BOS) + generated drops the SPM leading space
        Assert.Equal(root.GetProperty("full_text").GetString(), tokenizer.Decode([.. prompt[1..], .. generated]));
        Assert.Equal(root.GetProperty("prompt").GetString(), tokenizer.Decode(prompt[1..]));
    }

    [Fact]
    public void Special_ids_and_end_of_generation_come_from_the_file()
    {
        var tokenizer = Load("stories260K.gguf");
        Assert.Equal(TokenizerKind.Spm, tokenizer.Kind);
        Assert.Equal(512, tokenizer.VocabSize);
        Assert.Equal(1, tokenizer.Bos);
        Assert.Equal(2, tokenizer.Eos);
        Assert.True(tokenizer.AddBos);
        Assert.False(tokenizer.AddEos);
        Assert.True(tokenizer.IsEndOfGeneration(2));
        Assert.False(tokenizer.IsEndOfGeneration(1));
        Assert.Equal(TokenType.Control, tokenizer.GetTokenType(1));
        Assert.Equal("<0x0A>", Encoding.UTF8.GetString(tokenizer.GetTokenText(tokenizer.Newline)));
    }
}
