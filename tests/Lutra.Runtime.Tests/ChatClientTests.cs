using Lutra.Models;
using Lutra.Runtime.Chat;
using Lutra.Tests;
using Microsoft.Extensions.AI;

namespace Lutra.Runtime.Tests;

public class ChatClientTests
{
    private static LutraModel LoadModel() => LutraModel.Load(SharedData.Model("stories260K.gguf"),
        new LutraModelOptions { Tokenizer = new FakeTokenizer(), ChatRenderer = new FakeRenderer() });

    private static readonly ChatMessage[] Conversation =
    [
        new(ChatRole.System, "You tell stories."),
        new(ChatRole.User, "Once upon a time"),
    ];

    private static ChatOptions Greedy(int maxTokens) => new() { Temperature = 0, MaxOutputTokens = maxTokens };

    [Fact]
    public async Task Streaming_yields_text_per_token_then_finish_reason_and_usage()
    {
        using var model = LoadModel();
        using var client = model.AsChatClient(new InferenceOptions { ContextSize = 256 });
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(Conversation, Greedy(12), TestContext.Current.CancellationToken))
            updates.Add(u);

        var text = updates.Where(u => u.Text.Length > 0).ToList();
        Assert.Equal(12, text.Count);
        Assert.All(text, u => Assert.Matches(@"^\[\d+\]$", u.Text));
        var last = updates[^1];
        Assert.Equal(ChatFinishReason.Length, last.FinishReason);
        var usage = Assert.Single(last.Contents.OfType<UsageContent>()).Details;
        Assert.Equal(12, usage.OutputTokenCount);
        var promptText = new FakeRenderer().Render([new("system", "You tell stories."), new("user", "Once upon a time")], true);
        Assert.Equal(promptText.Length + 1, usage.InputTokenCount); // + BOS
    }

    [Fact]
    public async Task Non_streaming_response_equals_the_concatenated_stream()
    {
        using var model = LoadModel();
        using var client = model.AsChatClient(new InferenceOptions { ContextSize = 256 });
        var streamed = "";
        await foreach (var u in client.GetStreamingResponseAsync(Conversation, Greedy(10), TestContext.Current.CancellationToken))
            streamed += u.Text;
        var response = await client.GetResponseAsync(Conversation, Greedy(10), TestContext.Current.CancellationToken);
        Assert.Equal(streamed, response.Text);
        Assert.Equal(ChatRole.Assistant, response.Messages[0].Role);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(10, response.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task Stop_sequence_ends_the_answer_before_it()
    {
        using var model = LoadModel();
        using var client = model.AsChatClient(new InferenceOptions { ContextSize = 256 });
        var full = (await client.GetResponseAsync(Conversation, Greedy(10), TestContext.Current.CancellationToken)).Text;
        // Stop on the 4th token's text, split across the boundary between the 3rd and 4th piece.
        var pieces = System.Text.RegularExpressions.Regex.Matches(full, @"\[\d+\]").Select(m => m.Value).ToArray();
        var prefix = string.Concat(pieces[..3]);
        var options = Greedy(10);
        options.StopSequences = [pieces[2][^2..] + pieces[3]];
        var stopped = await client.GetResponseAsync(Conversation, options, TestContext.Current.CancellationToken);
        Assert.Equal(prefix[..^2], stopped.Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
    }

    [Fact]
    public async Task Cancelling_mid_stream_stops_generation_and_the_client_stays_usable()
    {
        using var model = LoadModel();
        using var client = model.AsChatClient(new InferenceOptions { ContextSize = 256 });
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var received = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync(Conversation, Greedy(100), cts.Token))
            {
                if (++received == 3)
                    await cts.CancelAsync();
            }
        });
        Assert.Equal(3, received);

        var after = await client.GetResponseAsync(Conversation, Greedy(2), TestContext.Current.CancellationToken);
        Assert.Equal(ChatFinishReason.Length, after.FinishReason);
    }

    [Fact]
    public async Task Instructions_become_a_leading_system_message()
    {
        using var model = LoadModel();
        using var client = model.AsChatClient(new InferenceOptions { ContextSize = 256 });
        var options = Greedy(1);
        options.Instructions = "Be brief.";
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi")], options, TestContext.Current.CancellationToken);
        var expected = new FakeRenderer().Render([new("system", "Be brief."), new("user", "Hi")], true);
        Assert.Equal(expected.Length + 1, response.Usage!.InputTokenCount);
    }

    [Fact]
    public void Chat_options_map_to_sampling_settings()
    {
        var g = LutraChatClient.ToGenerationOptions(new ChatOptions
        {
            Temperature = 0.3f, TopP = 0.5f, TopK = 7, Seed = 42, StopSequences = ["\n\n"], MaxOutputTokens = 33,
            FrequencyPenalty = 0.25f, PresencePenalty = 0.5f,
        });
        Assert.Equal(0.3f, g.Sampling.Temperature);
        Assert.Equal(0.5f, g.Sampling.TopP);
        Assert.Equal(7, g.Sampling.TopK);
        Assert.Equal(42, g.Sampling.Seed);
        Assert.Equal(0.25f, g.Sampling.FrequencyPenalty);
        Assert.Equal(0.5f, g.Sampling.PresencePenalty);
        Assert.Equal(["\n\n"], g.StopStrings);
        Assert.Equal(33, g.MaxTokens);
    }

    [Fact]
    public void Metadata_service_names_the_model()
    {
        using var model = LoadModel();
        using var client = model.AsChatClient(new InferenceOptions { ContextSize = 16 });
        var meta = client.GetService<ChatClientMetadata>();
        Assert.Equal("lutra", meta!.ProviderName);
        Assert.Same(model, client.GetService<LutraModel>());
    }
}
