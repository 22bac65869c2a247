using System.Runtime.InteropServices;
using Lutra.Core.Quants;
using Lutra.Gguf;

namespace Lutra.Models.Synthetic;

/// <summary>
/// Builds random-weight GGUF models with real shapes (<see cref="SyntheticShape"/>) in any weight type, like
/// llama-quantize --pure: every matrix in the requested type, norms and biases in F32. Matrices whose row
/// length the type's block does not divide fall back to Q8_0 (or F16), as llama-quantize's fallback does.
/// Values are Gaussian; to keep building a 1B model to seconds, each matrix repeats a few distinct
/// quantized rows (the memory traffic of a forward pass is the same).
/// </summary>
public static class SyntheticModel
{
    private const int DistinctRows = 16;

    /// <summary>The type a matrix of <paramref name="columns"/> inputs gets when <paramref name="requested"/> is asked for.</summary>
    public static GgmlType MatrixType(GgmlType requested, long columns)
    {
        if (columns % QuantTypes.Get(requested).BlockSize == 0)
            return requested;
        return columns % 32 == 0 ? GgmlType.Q8_0 : GgmlType.F16;
    }

    public static GgufWriter Create(SyntheticShape shape, GgmlType type, int seed = 20250220)
    {
        var info = QuantTypes.RequireSupported(type);
        if (type is GgmlType.Q8_1 or GgmlType.Q8_K)
            throw new ArgumentException($"{info.Name} is an activation format, not a weight type");
        var writer = new GgufWriter();
        AddMetadata(writer.Metadata, shape, type);
        var rng = new Random(seed);
        foreach (var (name, ne, isMatrix) in shape.Tensors())
        {
            if (isMatrix)
            {
                var t = MatrixType(type, ne[0]);
                // Embedding rows have unit scale like real embeddings; projections ~ 1/sqrt(fan-in).
                var scale = name.StartsWith("token_embd", StringComparison.Ordinal) ? 1f : 1f / MathF.Sqrt(ne[0]);
                var rows = MakeRows(rng, t, (int)ne[0], scale);
                writer.AddTensor(name, ne, t, stream => WriteRepeated(stream, rows, ne[1]));
            }
            else
            {
                var values = new float[ne[0]];
                var isNorm = name.EndsWith("norm.weight", StringComparison.Ordinal);
                for (var i = 0; i < values.Length; i++)
                    values[i] = isNorm ? 1f + 0.1f * Gaussian(rng) : 0.02f * Gaussian(rng);
                writer.AddTensor(name, ne, GgmlType.F32, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
            }
        }
        return writer;
    }

    private static byte[][] MakeRows(Random rng, GgmlType type, int columns, float scale)
    {
        var rows = new byte[DistinctRows][];
        var x = new float[columns];
        for (var r = 0; r < rows.Length; r++)
        {
            for (var i = 0; i < columns; i++)
                x[i] = scale * Gaussian(rng);
            rows[r] = new byte[QuantTypes.Get(type).RowBytes(columns)];
            QuantReference.Quantize(type, x, rows[r]);
        }
        return rows;
    }

    private static void WriteRepeated(Stream stream, byte[][] rows, long count)
    {
        for (long r = 0; r < count; r++)
            stream.Write(rows[r % rows.Length]);
    }

    private static float Gaussian(Random rng)
    {
        // Box-Muller; 1 - NextDouble() keeps the logarithm finite.
        var u1 = 1.0 - rng.NextDouble();
        var u2 = rng.NextDouble();
        return (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2));
    }

    private static void AddMetadata(GgufMetadata md, SyntheticShape s, GgmlType type)
    {
        var arch = s.Architecture;
        md.Set("general.architecture", GgufValue.From(arch));
        md.Set("general.name", GgufValue.From($"synthetic {s.Name} {QuantTypes.Get(type).Name}"));
        md.Set($"{arch}.context_length", GgufValue.From((uint)s.ContextLength));
        md.Set($"{arch}.embedding_length", GgufValue.From((uint)s.EmbeddingLength));
        md.Set($"{arch}.block_count", GgufValue.From((uint)s.LayerCount));
        md.Set($"{arch}.feed_forward_length", GgufValue.From((uint)s.FeedForwardLength));
        md.Set($"{arch}.attention.head_count", GgufValue.From((uint)s.HeadCount));
        md.Set($"{arch}.attention.head_count_kv", GgufValue.From((uint)s.HeadCountKv));
        md.Set($"{arch}.attention.layer_norm_rms_epsilon", GgufValue.From(1e-5f));
        md.Set($"{arch}.rope.freq_base", GgufValue.From(arch == "qwen2" ? 1_000_000f : 10_000f));
        md.Set("general.quantization_version", GgufValue.From(2u));

        // A Llama-style SPM vocabulary: <unk> <s> </s>, 256 byte tokens, then filler pieces.
        var tokens = new string[s.VocabSize];
        var scores = new float[s.VocabSize];
        var types = new int[s.VocabSize];
        tokens[0] = "<unk>"; types[0] = 2;
        tokens[1] = "<s>"; types[1] = 3;
        tokens[2] = "</s>"; types[2] = 3;
        for (var b = 0; b < 256; b++)
        {
            tokens[3 + b] = $"<0x{b:X2}>";
            types[3 + b] = 6;
        }
        for (var i = 259; i < s.VocabSize; i++)
        {
            tokens[i] = $"\u2581t{i}";
            scores[i] = -i;
            types[i] = 1;
        }
        md.Set("tokenizer.ggml.model", GgufValue.From("llama"));
        md.Set("tokenizer.ggml.tokens", GgufValue.FromArray(tokens));
        md.Set("tokenizer.ggml.scores", GgufValue.FromArray(scores));
        md.Set("tokenizer.ggml.token_type", GgufValue.FromArray(types));
        md.Set("tokenizer.ggml.bos_token_id", GgufValue.From(1u));
        md.Set("tokenizer.ggml.eos_token_id", GgufValue.From(2u));
        md.Set("tokenizer.ggml.unknown_token_id", GgufValue.From(0u));
    }
}
