using System.Runtime.InteropServices;
using Lutra.Gguf;
using Lutra.Models.Blocks;
using Lutra.Tests;

namespace Lutra.Models.Tests;

/// <summary>
/// Architecture variants built from stories260K's real weights: tied output, Q/K/V biases, and qwen2 (NeoX RoPE on
/// un-permuted Q/K rows), which must reproduce llama's outputs (formats.md §5.3).
/// </summary>
public class ArchitectureTests
{
    private static readonly int[] Tokens = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376];

    private sealed record Source(Dictionary<string, (long[] Shape, float[] Data)> Tensors, GgufMetadata Metadata);

    private static Source Stories()
    {
        using var file = GgufFile.Open(SharedData.Model("stories260K.gguf"));
        var tensors = file.Tensors.ToDictionary(t => t.Name,
            t => (t.Shape, MemoryMarshal.Cast<byte, float>(file.GetTensorData(t)).ToArray()));
        return new Source(tensors, file.Metadata);
    }

    private static GgufBuilder Build(Source s, string arch, Func<string, float[], float[]?> transform,
        IEnumerable<(string Name, long[] Shape, float[] Data)>? extra = null)
    {
        var m = s.Metadata;
        var b = new GgufBuilder()
            .String("general.architecture", arch)
            .UInt32(arch + ".context_length", m.GetUInt32("llama.context_length")!.Value)
            .UInt32(arch + ".embedding_length", m.GetUInt32("llama.embedding_length")!.Value)
            .UInt32(arch + ".block_count", m.GetUInt32("llama.block_count")!.Value)
            .UInt32(arch + ".feed_forward_length", m.GetUInt32("llama.feed_forward_length")!.Value)
            .UInt32(arch + ".attention.head_count", m.GetUInt32("llama.attention.head_count")!.Value)
            .UInt32(arch + ".attention.head_count_kv", m.GetUInt32("llama.attention.head_count_kv")!.Value)
            .Float32(arch + ".attention.layer_norm_rms_epsilon", m.GetFloat32("llama.attention.layer_norm_rms_epsilon")!.Value);
        foreach (var (name, (shape, data)) in s.Tensors)
        {
            if (transform(name, data) is { } d)
                b.Tensor(name, shape, d);
        }
        foreach (var (name, shape, data) in extra ?? [])
            b.Tensor(name, shape, data);
        return b;
    }

    private static float[] Logits(GgufBuilder builder)
    {
        using var file = builder.Open();
        using var model = Transformer.FromFile(file);
        var state = model.CreateState(new InferenceOptions { ContextSize = 16, KvCacheType = KvCacheType.F32 });
        var logits = new float[Tokens.Length * model.VocabSize];
        model.Forward(state, Tokens, 0, allLogits: true, logits);
        return logits;
    }

    private static double MaxDiff(float[] a, float[] b) => a.Zip(b).Max(p => Math.Abs((double)p.First - p.Second));

    [Fact]
    public void Missing_output_weight_means_tied_to_the_token_embedding()
    {
        // stories260K's output.weight is a copy of token_embd, so tying must change nothing.
        var s = Stories();
        var untied = Logits(Build(s, "llama", (_, d) => d));
        var tied = Logits(Build(s, "llama", (n, d) => n == TensorNames.Output ? null : d));
        Assert.Equal(untied, tied);
    }

    [Fact]
    public void Qwen2_with_neox_rope_and_unpermuted_qk_reproduces_llama_with_the_same_biases()
    {
        var s = Stories();
        const int headDim = 8;
        var rng = new Random(5);
        var layers = (int)s.Metadata.GetUInt32("llama.block_count")!.Value;
        // Biases in HF (qwen2) order; the llama file gets the q/k ones permuted like the converter permutes rows.
        var biases = new List<(string, long[], float[])>();
        var llamaBiases = new List<(string, long[], float[])>();
        for (var l = 0; l < layers; l++)
        {
            foreach (var (name, weight) in new[] { (TensorNames.AttnQBias(l), TensorNames.AttnQ(l)), (TensorNames.AttnKBias(l), TensorNames.AttnK(l)), (TensorNames.AttnVBias(l), TensorNames.AttnV(l)) })
            {
                var rows = (int)s.Tensors[weight].Shape[1];
                var hf = Enumerable.Range(0, rows).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
                biases.Add((name, [rows], hf));
                llamaBiases.Add((name, [rows], name == TensorNames.AttnVBias(l) ? hf : ToLlamaOrder(hf, 1, headDim)));
            }
        }
        var llama = Logits(Build(s, "llama", (_, d) => d, llamaBiases));
        var qwen2 = Logits(Build(s, "qwen2", (name, d) =>
            name.EndsWith("attn_q.weight", StringComparison.Ordinal) || name.EndsWith("attn_k.weight", StringComparison.Ordinal)
                ? ToHfOrder(d, 64, headDim)
                : d, biases));
        var unbiased = Logits(Build(s, "llama", (_, d) => d));

        Assert.True(MaxDiff(llama, unbiased) > 0.01, "the biases should change the logits");
        var diff = MaxDiff(llama, qwen2);
        Assert.True(diff <= 1e-4, $"qwen2 vs llama max abs {diff}");
    }

    /// <summary>Inverse of the converter's permute: HF row i ← GGUF row 2i, HF row i + d/2 ← GGUF row 2i + 1, per head.</summary>
    private static float[] ToHfOrder(float[] gguf, int columns, int headDim)
    {
        var result = new float[gguf.Length];
        var rows = gguf.Length / columns;
        for (var h = 0; h < rows; h += headDim)
        {
            for (var i = 0; i < headDim / 2; i++)
            {
                Array.Copy(gguf, (h + 2 * i) * columns, result, (h + i) * columns, columns);
                Array.Copy(gguf, (h + 2 * i + 1) * columns, result, (h + i + headDim / 2) * columns, columns);
            }
        }
        return result;
    }

    private static float[] ToLlamaOrder(float[] hf, int columns, int headDim)
    {
        var result = new float[hf.Length];
        var rows = hf.Length / columns;
        for (var h = 0; h < rows; h += headDim)
        {
            for (var i = 0; i < headDim / 2; i++)
            {
                Array.Copy(hf, (h + i) * columns, result, (h + 2 * i) * columns, columns);
                Array.Copy(hf, (h + i + headDim / 2) * columns, result, (h + 2 * i + 1) * columns, columns);
            }
        }
        return result;
    }

    [Fact]
    public void Unsupported_architecture_is_named_in_the_error()
    {
        using var file = Build(Stories(), "gpt2", (_, d) => d).Open();
        var e = Assert.Throws<NotSupportedException>(() => Transformer.FromFile(file));
        Assert.Contains("'gpt2'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Qwen2_without_qkv_biases_is_rejected()
    {
        using var file = Build(Stories(), "qwen2", (_, d) => d).Open();
        var e = Assert.Throws<GgufFormatException>(() => Transformer.FromFile(file));
        Assert.Contains("blk.0.attn_q.bias", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_or_misshapen_tensors_are_named()
    {
        var s = Stories();
        using var missing = Build(s, "llama", (n, d) => n == TensorNames.FfnUp(3) ? null : d).Open();
        Assert.Contains("blk.3.ffn_up.weight", Assert.Throws<GgufFormatException>(() => Transformer.FromFile(missing)).Message, StringComparison.Ordinal);

        var b = Build(s, "llama", (n, d) => n == TensorNames.AttnNorm(1) ? null : d);
        b.Tensor(TensorNames.AttnNorm(1), [32], new float[32]);
        using var misshapen = b.Open();
        var e = Assert.Throws<GgufFormatException>(() => Transformer.FromFile(misshapen));
        Assert.Contains("blk.1.attn_norm.weight", e.Message, StringComparison.Ordinal);
        Assert.Contains("expected [64]", e.Message, StringComparison.Ordinal);
    }
}
