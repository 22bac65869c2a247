namespace Lutra.Runtime.Sampling;

/// <summary>
/// Sampling settings with llama.cpp's defaults and meaning. The chain is llama.cpp's:
/// penalties → top-k → top-p → min-p → temperature → random draw. Temperature ≤ 0 means greedy (argmax after penalties).
/// </summary>
public sealed record SamplerOptions
{
    public float Temperature { get; init; } = 0.8f;

    /// <summary>Keep the k most likely tokens; ≤ 0 disables.</summary>
    public int TopK { get; init; } = 40;

    /// <summary>Keep the smallest set whose probabilities sum to at least p; 1 disables.</summary>
    public float TopP { get; init; } = 0.95f;

    /// <summary>Drop tokens less likely than min_p × the best token's probability; 0 disables.</summary>
    public float MinP { get; init; } = 0.05f;

    /// <summary>Divides positive (multiplies negative) logits of recently seen tokens; 1 disables.</summary>
    public float RepeatPenalty { get; init; } = 1.0f;

    /// <summary>Subtracts count × this from the logit of each recently seen token.</summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>Subtracts this from the logit of each recently seen token.</summary>
    public float PresencePenalty { get; init; }

    /// <summary>How many of the last tokens (prompt included) the penalties look at; 0 disables, -1 = the whole context.</summary>
    public int PenaltyLastN { get; init; } = 64;

    /// <summary>Seed of the random draw; the same seed gives the same text. Null: a random seed.</summary>
    public int? Seed { get; init; }

    public static SamplerOptions Greedy { get; } = new() { Temperature = 0 };

    public bool IsGreedy => Temperature <= 0;
}
