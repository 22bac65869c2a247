namespace Lutra.Models;

/// <summary>
/// Per-context compute settings. Which kernel multiplies each weight is decided once per loaded model, since every
/// context shares the weights and their repacked copies: see <see cref="KernelOptions"/> (Transformer.Load).
/// </summary>
public sealed record InferenceOptions
{
    /// <summary>Positions the KV cache holds; 0 = the model's trained context, capped at <see cref="DefaultMaxContext"/>.</summary>
    public int ContextSize { get; init; }

    /// <summary>Tokens evaluated together in one forward pass; longer inputs are split. 0 = min(512, context).</summary>
    public int BatchSize { get; init; }

    /// <summary>Threads that share each matrix multiplication (the calling thread included).</summary>
    public int Threads { get; init; } = 1;

    public KvCacheType KvCacheType { get; init; } = KvCacheType.F16;

    /// <summary>
    /// Reference arithmetic: weights dequantized to f32, activations never rounded, f32 KV cache, double
    /// accumulators in matmuls. Slow; meant for checking against an exact forward pass.
    /// </summary>
    public bool Reference { get; init; }

    public const int DefaultMaxContext = 4096;
}
