using System.Diagnostics;
using System.Runtime.CompilerServices;
using Lutra.Models;
using Lutra.Runtime.Generation;
using Lutra.Runtime.Sampling;

namespace Lutra.Runtime;

/// <summary>
/// One generation context: a KV cache, the tokens it holds, and the buffers of a forward pass, all allocated
/// once. Not thread-safe; use one context per concurrent conversation.
/// </summary>
public sealed class LutraContext : IDisposable
{
    private readonly InferenceState _state;
    private readonly int[] _tokens;    // [n_ctx] ids whose K/V are in the cache, by position
    private readonly int[] _oneToken = new int[1];

    internal LutraContext(LutraModel model, InferenceOptions options)
    {
        Model = model;
        _state = model.Transformer.CreateState(options);
        _tokens = new int[_state.ContextSize];
    }

    public LutraModel Model { get; }

    public int ContextSize => _state.ContextSize;

    /// <summary>Tokens in the cache; the next evaluated token goes to this position.</summary>
    public int Position { get; private set; }

    /// <summary>Logits after the last token of the last <see cref="Evaluate"/>.</summary>
    public ReadOnlySpan<float> Logits => _state.LastLogits;

    public GenerationStats? LastGeneration { get; private set; }

    /// <summary>Stops the context's worker threads (when it has more than one thread).</summary>
    public void Dispose() => _state.Dispose();

    /// <summary>Forgets every cached token.</summary>
    public void Clear() => Position = 0;

    /// <summary>Appends <paramref name="tokens"/> (one batch, causal) and returns the last token's logits.</summary>
    public ReadOnlySpan<float> Evaluate(ReadOnlySpan<int> tokens)
    {
        Model.Transformer.Forward(_state, tokens, Position, allLogits: false, default);
        Record(tokens);
        return _state.LastLogits;
    }

    /// <summary>Appends <paramref name="tokens"/> and writes the logits of every one: [tokens][n_vocab].</summary>
    public void EvaluateAll(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        Model.Transformer.Forward(_state, tokens, Position, allLogits: true, logits);
        Record(tokens);
    }

    private void Record(ReadOnlySpan<int> tokens)
    {
        tokens.CopyTo(_tokens.AsSpan(Position));
        Position += tokens.Length;
    }

    /// <summary>
    /// Evaluates a prompt, reusing the cached tokens it starts with (a chat's earlier turns), and leaves its last
    /// logits in <see cref="Logits"/>. Returns how many tokens were evaluated.
    /// </summary>
    public int EvaluatePrompt(ReadOnlySpan<int> prompt)
    {
        if (prompt.IsEmpty)
            throw new ArgumentException("the prompt has no tokens", nameof(prompt));
        if (prompt.Length > ContextSize)
            throw new ContextFullException(0, prompt.Length, ContextSize);
        var common = prompt.CommonPrefixLength(_tokens.AsSpan(0, Position));
        if (common == prompt.Length)
            common--; // the last token is evaluated again to get its logits
        Position = common;
        Evaluate(prompt[common..]);
        return prompt.Length - common;
    }

    /// <summary>
    /// Generates token ids after <paramref name="prompt"/>. Stops at an end-of-generation token (not yielded),
    /// after <see cref="GenerationOptions.MaxTokens"/>, or when the context is full. Cancellation is checked per token.
    /// </summary>
    public IEnumerable<int> GenerateTokens(int[] prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        options ??= new GenerationOptions();
        var sampler = new Sampler(Model.VocabSize, options.Sampling, ContextSize);
        return Generate(prompt, options, sampler, cancellationToken);
    }

    private IEnumerable<int> Generate(int[] prompt, GenerationOptions options, Sampler sampler, CancellationToken ct)
    {
        var stats = new GenerationStats { PromptTokens = prompt.Length, FinishReason = FinishReason.Cancelled };
        LastGeneration = stats;
        ct.ThrowIfCancellationRequested();
        var clock = Stopwatch.StartNew();
        stats.PromptTokensEvaluated = EvaluatePrompt(prompt);
        stats.PromptTime = clock.Elapsed;
        foreach (var t in prompt)
            sampler.Accept(t);

        clock.Restart();
        var max = options.MaxTokens > 0 ? options.MaxTokens : int.MaxValue;
        try
        {
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                var token = sampler.Sample(_state.LastLogits);
                if (Model.IsEndOfGeneration(token))
                {
                    stats.FinishReason = FinishReason.Stop;
                    yield break;
                }
                sampler.Accept(token);
                stats.GeneratedTokens++;
                stats.GenerationTime = clock.Elapsed;
                yield return token;
                if (stats.GeneratedTokens >= max || Position >= ContextSize)
                {
                    stats.FinishReason = FinishReason.Length;
                    yield break;
                }
                _oneToken[0] = token;
                Evaluate(_oneToken);
            }
        }
        finally
        {
            stats.GenerationTime = clock.Elapsed;
        }
    }

    /// <summary>Generates text after a text prompt (encoded with BOS), streamed as it is decoded.</summary>
    public IAsyncEnumerable<string> GenerateAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        options ??= new GenerationOptions();
        var ids = Model.Tokenizer.Encode(prompt, addSpecial: true, parseSpecial: options.ParseSpecial);
        return GenerateAsync(ids, options, cancellationToken);
    }

    /// <summary>Generates text after a tokenized prompt, streamed as it is decoded; stop strings are cut off.</summary>
    public async IAsyncEnumerable<string> GenerateAsync(int[] prompt, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        options ??= new GenerationOptions();
        var decoder = Model.Tokenizer.CreateStreamingDecoder();
        var filter = new StopStringFilter(options.StopStrings);
        foreach (var token in GenerateTokens(prompt, options, cancellationToken))
        {
            var text = filter.Push(decoder.Append(token));
            if (text.Length > 0)
                yield return text;
            if (filter.Stopped)
            {
                LastGeneration!.FinishReason = FinishReason.Stop;
                yield break;
            }
            // Let the consumer's continuation (UI, network write) run between tokens.
            await Task.Yield();
        }
        var tail = filter.Push(decoder.Flush()) + filter.Flush();
        if (tail.Length > 0)
            yield return tail;
    }
}
