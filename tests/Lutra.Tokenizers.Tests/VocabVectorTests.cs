using System.Text;
using Lutra.Tests;

namespace Lutra.Tokenizers.Tests;

/// <summary>
/// llama.cpp's tokenizer test vectors (test-tokenizer-0): each vocabulary's .inp strings, tokenized with
/// add_special = false and parse_special = false, must give the ids in its .out file.
/// </summary>
public sealed class VocabVectorTests
{
    private const string Separator = "\n__ggml_vocab_test__\n";

    public static TheoryData<string> Vocabs => new()
    {
        "llama-spm", "bert-bge", "deepseek-coder", "deepseek-llm", "falcon", "gpt-2", "mpt",
    };

    internal static (string Text, int[] Ids)[] LoadCases(string vocab)
    {
        var inp = File.ReadAllText(SharedData.Require($"tokenizer/ggml-vocab-{vocab}.gguf.inp"), Encoding.UTF8);
        var outLines = File.ReadAllText(SharedData.Require($"tokenizer/ggml-vocab-{vocab}.gguf.out"), Encoding.UTF8).Split('\n');
        var texts = inp.Split(Separator);
        // The file ends with a separator, which leaves one empty trailing element.
        var count = texts.Length - 1;
        Assert.True(outLines.Length >= count, $"{vocab}: {count} strings but {outLines.Length} result lines");
        return [.. Enumerable.Range(0, count).Select(i => (texts[i],
            outLines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray()))];
    }

    [Theory]
    [MemberData(nameof(Vocabs))]
    public void Encodes_every_llama_cpp_test_string(string vocab)
    {
        var tokenizer = Tokenizer.FromGgufFile(SharedData.Require($"tokenizer/ggml-vocab-{vocab}.gguf"));
        var cases = LoadCases(vocab);
        var failures = new List<string>();
        foreach (var (text, expected) in cases)
        {
            var actual = tokenizer.Encode(text, addSpecial: false, parseSpecial: false);
            if (!actual.SequenceEqual(expected))
                failures.Add($"'{Escape(text)}': expected [{string.Join(' ', expected)}] got [{string.Join(' ', actual)}]");
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"{vocab}: {cases.Length - failures.Count}/{cases.Length} cases pass");
        Assert.True(failures.Count == 0,
            $"{vocab}: {failures.Count}/{cases.Length} cases differ:\n" + string.Join('\n', failures));
    }

    private static string Escape(string s) => s.Replace("\n", "\\n").Replace("\t", "\\t").Replace("\r", "\\r");
}
