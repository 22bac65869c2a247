using Lutra.Runtime.Sampling;

namespace Lutra.Runtime;

/// <summary>What to generate and when to stop.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to generate; ≤ 0: until end of generation or a full context.</summary>
    public int MaxTokens { get; init; } = -1;

    public SamplerOptions Sampling { get; init; } = new();

    /// <summary>Text that ends the generation; it is not part of the output.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>Recognise special-token text (e.g. "&lt;|im_start|&gt;") in a text prompt.</summary>
    public bool ParseSpecial { get; init; } = true;
}

public enum FinishReason
{
    /// <summary>An end-of-generation token or a stop string.</summary>
    Stop,

    /// <summary>MaxTokens reached, or the context is full.</summary>
    Length,

    Cancelled,
}

/// <summary>Counts and timings of the last generation of a context.</summary>
public sealed class GenerationStats
{
    public int PromptTokens { get; internal set; }

    /// <summary>Prompt tokens actually evaluated (the rest were reused from the cache).</summary>
    public int PromptTokensEvaluated { get; internal set; }

    public int GeneratedTokens { get; internal set; }

    public TimeSpan PromptTime { get; internal set; }

    public TimeSpan GenerationTime { get; internal set; }

    public FinishReason FinishReason { get; internal set; }

    public double PromptTokensPerSecond => PromptTokensEvaluated / Math.Max(PromptTime.TotalSeconds, 1e-9);

    public double GenerationTokensPerSecond => GeneratedTokens / Math.Max(GenerationTime.TotalSeconds, 1e-9);
}
