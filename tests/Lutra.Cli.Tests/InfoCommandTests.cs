using System.Text.Json;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Gguf;
using Lutra.Tests;

namespace Lutra.Cli.Tests;

[Collection(ConsoleCollection.Name)]
public sealed class InfoCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lutra-info-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Info_shows_stories260K_as_a_llama_with_n_embd_64_5_layers_and_vocab_512()
    {
        var path = SharedData.Model("stories260K.gguf");
        var (exit, stdout, stderr) = LutraCli.Run("info", path);
        Assert.Equal(0, exit);
        Assert.Equal("", stderr);
        var lines = stdout.Split('\n').Select(l => l.TrimEnd()).ToArray();
        Assert.Contains(lines, l => l.StartsWith("architecture:", StringComparison.Ordinal) && l.EndsWith(" llama", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("embedding length (n_embd):", StringComparison.Ordinal) && l.EndsWith(" 64", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("layers (block_count):", StringComparison.Ordinal) && l.EndsWith(" 5", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("vocab size:", StringComparison.Ordinal) && l.EndsWith(" 512", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("GGUF version:", StringComparison.Ordinal) && l.EndsWith(" 3", StringComparison.Ordinal));
        // Long arrays are summarised with their type, count and first items.
        Assert.Contains(lines, l => l.Contains("tokenizer.ggml.tokens", StringComparison.Ordinal)
            && l.Contains("[STRING × 512]", StringComparison.Ordinal) && l.Contains("\"<unk>\", \"<s>\", \"</s>\"", StringComparison.Ordinal)
            && l.EndsWith("...", StringComparison.Ordinal));
        // The tensor table and the per-type totals.
        Assert.Contains(lines, l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is ["token_embd.weight", "64", "×", "512", "F32", "131,072"]);
        Assert.Contains(lines, l => l.TrimStart().StartsWith("F32", StringComparison.Ordinal) && l.Contains("48 tensors", StringComparison.Ordinal));
    }

    [Fact]
    public void Info_json_has_metadata_keys_verbatim_tensors_type_totals_and_parameter_count()
    {
        var path = SharedData.Model("stories260K.gguf");
        var (exit, stdout, _) = LutraCli.Run("info", path, "--json");
        Assert.Equal(0, exit);
        Assert.Contains("\"llama.embedding_length\": 64", stdout, StringComparison.Ordinal);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        Assert.Equal(64, root.GetProperty("llama.embedding_length").GetInt32());
        Assert.Equal(5, root.GetProperty("llama.block_count").GetInt32());
        Assert.Equal("llama", root.GetProperty("general.architecture").GetString());
        var tokens = root.GetProperty("tokenizer.ggml.tokens");
        Assert.Equal(512, tokens.GetProperty("count").GetInt32());
        Assert.Equal("<unk>", tokens.GetProperty("first")[0].GetString());

        // Cross-check the summary against the reader, tensor by tensor.
        using var file = GgufFile.Open(path);
        var tensors = root.GetProperty("tensors");
        Assert.Equal(file.Tensors.Count, tensors.GetArrayLength());
        Assert.Equal(file.Tensors.Count, root.GetProperty("tensor_count").GetInt32());
        for (var i = 0; i < file.Tensors.Count; i++)
        {
            var t = file.Tensors[i];
            Assert.Equal(t.Name, tensors[i].GetProperty("name").GetString());
            Assert.Equal(t.Shape, tensors[i].GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()));
            Assert.Equal(t.ByteSize, tensors[i].GetProperty("bytes").GetInt64());
        }
        // stories260K: 5 layers of (4 attention + 3 ffn matrices + 2 norms), embeddings, output and its norm.
        const long perLayer = 64 * 64 * 2 + 64 * 32 * 2 + 64 * 172 * 3 + 64 * 2;
        const long expected = 5 * perLayer + 64 * 512 * 2 + 64;
        Assert.Equal(expected, root.GetProperty("parameter_count").GetInt64());
        var f32 = root.GetProperty("types").GetProperty("F32");
        Assert.Equal(48, f32.GetProperty("tensors").GetInt32());
        Assert.Equal(expected * 4, f32.GetProperty("bytes").GetInt64());
    }

    [Fact]
    public void Info_json_totals_split_by_type_for_a_quantized_model()
    {
        var (exit, stdout, _) = LutraCli.Run("info", SharedData.Model("stories260K-Q4_0.gguf"), "--json");
        Assert.Equal(0, exit);
        using var doc = JsonDocument.Parse(stdout);
        var types = doc.RootElement.GetProperty("types");
        var total = types.EnumerateObject().Sum(t => t.Value.GetProperty("bytes").GetInt64());
        var tensorBytes = doc.RootElement.GetProperty("tensors").EnumerateArray().Sum(t => t.GetProperty("bytes").GetInt64());
        Assert.Equal(tensorBytes, total);
        Assert.True(types.TryGetProperty("Q4_0", out var q4));
        Assert.Equal(0, q4.GetProperty("parameters").GetInt64() % 32);
    }

    [Fact]
    public void Info_kernels_needs_no_model_and_lists_every_weight_type_with_its_kernels()
    {
        var (exit, stdout, stderr) = LutraCli.Run("info", "--kernels");
        Assert.True(exit == 0, stderr);
        Assert.Contains($"instruction set: {KernelIsa.Selected}", stdout, StringComparison.Ordinal);
        foreach (var type in new[] { GgmlType.F16, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.TQ1_0 })
        {
            var line = stdout.Split('\n').Single(l => l.TrimStart().StartsWith(QuantTypes.Get(type).Name + " ", StringComparison.Ordinal));
            Assert.Contains(KernelTable.Get(type).Name, line, StringComparison.Ordinal);
            foreach (var repacked in KernelTable.RepackingKernels(type, KernelIsa.Selected))
                Assert.Contains(repacked.Name, line, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("--bogus")]
    [InlineData("--kernels", "--json")]
    [InlineData]
    public void Info_without_a_model_or_with_an_unknown_option_is_one_error_line(params string[] args)
    {
        var (exit, stdout, stderr) = LutraCli.Run(["info", .. args]);
        Assert.Equal(1, exit);
        Assert.Equal("", stdout);
        Assert.StartsWith("error: ", stderr, StringComparison.Ordinal);
        Assert.Single(stderr.TrimEnd().Split('\n'));
    }

    [Fact]
    public void Info_on_a_missing_file_prints_an_error_and_exits_1()
    {
        var (exit, stdout, stderr) = LutraCli.Run("info", Path.Combine(_dir, "missing.gguf"));
        Assert.Equal(1, exit);
        Assert.Equal("", stdout);
        Assert.StartsWith("error: ", stderr, StringComparison.Ordinal);
        Assert.Contains("missing.gguf", stderr, StringComparison.Ordinal);
        Assert.Single(stderr.TrimEnd().Split('\n'));
    }

    [Fact]
    public void Info_on_a_malformed_file_names_the_bad_field()
    {
        var path = Path.Combine(_dir, "bad.gguf");
        byte[] header = [(byte)'G', (byte)'G', (byte)'U', (byte)'F', 3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        File.WriteAllBytes(path, header); // claims 2^40 tensors
        var (exit, _, stderr) = LutraCli.Run("info", path, "--json");
        Assert.Equal(1, exit);
        Assert.StartsWith("error: invalid GGUF", stderr, StringComparison.Ordinal);
        Assert.Contains("n_tensors", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Info_json_handles_every_value_type_and_odd_strings()
    {
        var w = new GgufWriter();
        w.Metadata.Set("general.architecture", GgufValue.From("test"));
        w.Metadata.Set("nan", GgufValue.From(float.NaN));
        w.Metadata.Set("template", GgufValue.From("line1\nline2 \"quoted\""));
        w.Metadata.Set("bytes", new GgufValue(GgufValueType.String, new GgufString([0xFF, 0x41])));
        w.Metadata.Set("u64", GgufValue.From(ulong.MaxValue));
        w.Metadata.Set("tensors", GgufValue.From(1u)); // collides with a summary property
        w.Metadata.Set("nested", new GgufValue(GgufValueType.Array, new[] { GgufValue.FromArray([1, 2]) }, GgufValueType.Array));
        w.AddTensor("w", [32, 2], GgmlType.Q8_0, new byte[68]);
        var path = Path.Combine(_dir, "odd.gguf");
        w.Write(path);

        var (exit, stdout, _) = LutraCli.Run("info", path, "--json");
        Assert.Equal(0, exit);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        Assert.Equal("NaN", root.GetProperty("nan").GetString());
        Assert.Equal("line1\nline2 \"quoted\"", root.GetProperty("template").GetString());
        Assert.Equal("\uFFFDA", root.GetProperty("bytes").GetString());
        Assert.Equal(ulong.MaxValue, root.GetProperty("u64").GetUInt64());
        Assert.Equal(1, root.GetProperty("kv.tensors").GetInt32());
        Assert.Equal(JsonValueKind.Array, root.GetProperty("tensors").ValueKind);
        Assert.Equal(2, root.GetProperty("nested")[0][1].GetInt32());

        (exit, stdout, _) = LutraCli.Run("info", path);
        Assert.Equal(0, exit);
        Assert.Contains("\"line1\\nline2 \\\"quoted\\\"\"", stdout, StringComparison.Ordinal);
        Assert.Contains("[[INT32 × 2] 1, 2]", stdout, StringComparison.Ordinal);
    }
}
