namespace Lutra.Models.Synthetic;

/// <summary>
/// Real model shapes for random-weight GGUFs, so benchmarks need no download. The numbers follow the
/// published configurations these names stand for (vocabularies trimmed to Llama-2's 32000 where noted).
/// </summary>
public sealed record SyntheticShape(
    string Name,
    string Architecture,
    int EmbeddingLength,
    int FeedForwardLength,
    int LayerCount,
    int HeadCount,
    int HeadCountKv,
    int VocabSize,
    int ContextLength,
    bool TiedOutput,
    bool QkvBias)
{
    public int HeadDim => EmbeddingLength / HeadCount;

    public static IReadOnlyList<SyntheticShape> All { get; } =
    [
        // Llama-3.2-1B's transformer (2048/8192/16 layers/32:8 heads) with the 32000-token Llama-2 vocabulary.
        new("llama-1b", "llama", 2048, 8192, 16, 32, 8, 32000, 4096, TiedOutput: false, QkvBias: false),
        // A small Llama for quick runs: 768/2304/12 layers/12:4 heads, 134 M parameters with its 32000 vocabulary.
        new("llama-134m", "llama", 768, 2304, 12, 12, 4, 32000, 2048, TiedOutput: false, QkvBias: false),
        // Qwen2-0.5B: 896/4864/24 layers/14:2 heads, tied embeddings, q/k/v biases, 151936 vocabulary.
        new("qwen2-0.5b", "qwen2", 896, 4864, 24, 14, 2, 151936, 4096, TiedOutput: true, QkvBias: true),
    ];

    public static SyntheticShape Get(string name) =>
        All.FirstOrDefault(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown synthetic shape '{name}'; known shapes: {string.Join(", ", All.Select(s => s.Name))}");

    /// <summary>Every tensor of the model: GGUF name and ggml ne (contiguous dimension first).</summary>
    public IEnumerable<(string Name, long[] Shape, bool IsMatrix)> Tensors()
    {
        var kv = HeadDim * HeadCountKv;
        yield return ("token_embd.weight", [EmbeddingLength, VocabSize], true);
        for (var l = 0; l < LayerCount; l++)
        {
            var p = $"blk.{l}.";
            yield return (p + "attn_norm.weight", [EmbeddingLength], false);
            yield return (p + "attn_q.weight", [EmbeddingLength, EmbeddingLength], true);
            yield return (p + "attn_k.weight", [EmbeddingLength, kv], true);
            yield return (p + "attn_v.weight", [EmbeddingLength, kv], true);
            if (QkvBias)
            {
                yield return (p + "attn_q.bias", [EmbeddingLength], false);
                yield return (p + "attn_k.bias", [kv], false);
                yield return (p + "attn_v.bias", [kv], false);
            }
            yield return (p + "attn_output.weight", [EmbeddingLength, EmbeddingLength], true);
            yield return (p + "ffn_norm.weight", [EmbeddingLength], false);
            yield return (p + "ffn_gate.weight", [EmbeddingLength, FeedForwardLength], true);
            yield return (p + "ffn_up.weight", [EmbeddingLength, FeedForwardLength], true);
            yield return (p + "ffn_down.weight", [FeedForwardLength, EmbeddingLength], true);
        }
        yield return ("output_norm.weight", [EmbeddingLength], false);
        if (!TiedOutput)
            yield return ("output.weight", [EmbeddingLength, VocabSize], true);
    }

    public long ParameterCount => Tensors().Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
}
