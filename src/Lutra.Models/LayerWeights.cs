namespace Lutra.Models;

/// <summary>One transformer block's weights. Shapes are GGUF ne order [inputs, outputs].</summary>
public sealed class LayerWeights
{
    public required float[] AttnNorm { get; init; }       // [n_embd]
    public required WeightMatrix Q { get; init; }         // [n_embd, head_dim·n_head]
    public required WeightMatrix K { get; init; }         // [n_embd, head_dim·n_head_kv]
    public required WeightMatrix V { get; init; }         // [n_embd, head_dim·n_head_kv]
    public required WeightMatrix Output { get; init; }    // [head_dim·n_head, n_embd]
    public float[]? QBias { get; init; }                  // [head_dim·n_head]      qwen2: required
    public float[]? KBias { get; init; }                  // [head_dim·n_head_kv]   qwen2: required
    public float[]? VBias { get; init; }                  // [head_dim·n_head_kv]   qwen2: required
    public float[]? OutputBias { get; init; }             // [n_embd]
    public required float[] FfnNorm { get; init; }        // [n_embd]
    public required WeightMatrix Gate { get; init; }      // [n_embd, n_ff]
    public required WeightMatrix Up { get; init; }        // [n_embd, n_ff]
    public required WeightMatrix Down { get; init; }      // [n_ff, n_embd]
    public float[]? GateBias { get; init; }               // [n_ff]
    public float[]? UpBias { get; init; }                 // [n_ff]
    public float[]? DownBias { get; init; }               // [n_embd]
}
