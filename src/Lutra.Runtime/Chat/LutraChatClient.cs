using System.Runtime.CompilerServices;
using System.Text;
using Lutra.Models;
using Lutra.Runtime.Sampling;
using Microsoft.Extensions.AI;

namespace Lutra.Runtime.Chat;

/// <summary>
/// <see cref="IChatClient"/> over one context of a <see cref="LutraModel"/>: messages go through the model's chat
/// template, ChatOptions map to sampling settings. Requests are served one at a time; consecutive turns of a
/// conversation reuse the cached prompt prefix.
/// </summary>
public sealed class LutraChatClient : IChatClient
{
    private readonly LutraModel _model;
    private readonly LutraContext _context;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ChatClientMetadata _metadata;

    public LutraChatClient(LutraModel model, InferenceOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _context = model.CreateContext(options);
        _metadata = new ChatClientMetadata("lutra", null, model.Name);
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var text = new StringBuilder();
        ChatResponseUpdate? last = null;
        UsageDetails? usage = null;
        await foreach (var update in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
        {
            text.Append(update.Text);
            foreach (var c in update.Contents)
            {
                if (c is UsageContent u)
                    usage = u.Details;
            }
            last = update;
        }
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text.ToString()))
        {
            FinishReason = last?.FinishReason,
            ModelId = _model.Name,
            ResponseId = last?.ResponseId,
            Usage = usage,
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var turns = messages.Select(m => new ChatTurn(m.Role.Value, m.Text)).ToList();
        if (options?.Instructions is { Length: > 0 } instructions)
            turns.Insert(0, new ChatTurn(ChatRole.System.Value, instructions));
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var prompt = Tokenize(_model.ChatRenderer.Render(turns, addGenerationPrompt: true));
            var generation = ToGenerationOptions(options);
            var responseId = Guid.NewGuid().ToString("N");
            await foreach (var piece in _context.GenerateAsync(prompt, generation, cancellationToken).ConfigureAwait(false))
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, piece) { ResponseId = responseId, ModelId = _model.Name };
            }
            var stats = _context.LastGeneration!;
            yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(new UsageDetails
            {
                InputTokenCount = stats.PromptTokens,
                OutputTokenCount = stats.GeneratedTokens,
                TotalTokenCount = stats.PromptTokens + stats.GeneratedTokens,
            })])
            {
                ResponseId = responseId,
                ModelId = _model.Name,
                FinishReason = stats.FinishReason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop,
            };
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Rendered templates usually spell out the BOS token themselves; encoding with add-special then yields two
    /// BOS ids, and the duplicate is dropped.
    /// </summary>
    private int[] Tokenize(string prompt)
    {
        var tokenizer = _model.Tokenizer;
        var ids = tokenizer.Encode(prompt, addSpecial: true, parseSpecial: true);
        if (ids.Length >= 2 && tokenizer.BosId is int bos && ids[0] == bos && ids[1] == bos)
            ids = ids[1..];
        return ids;
    }

    /// <summary>ChatOptions → generation settings; unset values keep llama.cpp's defaults.</summary>
    public static GenerationOptions ToGenerationOptions(ChatOptions? options)
    {
        if (options is null)
            return new GenerationOptions();
        var defaults = new SamplerOptions();
        return new GenerationOptions
        {
            MaxTokens = options.MaxOutputTokens ?? -1,
            StopStrings = options.StopSequences?.ToArray() ?? [],
            Sampling = defaults with
            {
                Temperature = options.Temperature ?? defaults.Temperature,
                TopP = options.TopP ?? defaults.TopP,
                TopK = options.TopK ?? defaults.TopK,
                FrequencyPenalty = options.FrequencyPenalty ?? defaults.FrequencyPenalty,
                PresencePenalty = options.PresencePenalty ?? defaults.PresencePenalty,
                Seed = options.Seed is long seed ? unchecked((int)(seed ^ (seed >> 32))) : null,
            },
        };
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
            return null;
        if (serviceType == typeof(ChatClientMetadata))
            return _metadata;
        if (serviceType == typeof(LutraModel))
            return _model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    public void Dispose()
    {
        _context.Dispose();
        _gate.Dispose();
    }
}
