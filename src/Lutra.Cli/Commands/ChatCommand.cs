using System.CommandLine;
using System.Text;
using Lutra.Models;
using Lutra.Runtime;
using Microsoft.Extensions.AI;

namespace Lutra.Cli.Commands;

/// <summary>`lutra chat`: an interactive conversation through the model's chat template; Ctrl-C stops the current answer.</summary>
internal static class ChatCommand
{
    public static Command Create()
    {
        var model = InferenceFlags.Model();
        var system = new Option<string?>("--system-prompt", "-sys") { Description = "System message" };
        var predict = new Option<int>("--n-predict", "-n") { Description = "Most tokens per answer (-1: no limit)", DefaultValueFactory = _ => -1 };
        var context = InferenceFlags.ContextSize(4096);
        var cacheK = InferenceFlags.CacheTypeK();
        var cacheV = InferenceFlags.CacheTypeV();
        var threads = InferenceFlags.Threads();
        var sampling = new SamplingFlags();
        var kernels = new KernelFlags();
        var command = new Command("chat", "Chat with the model interactively (empty line or end of input quits)") { model, system, predict, context, cacheK, cacheV, threads };
        sampling.AddTo(command);
        kernels.AddTo(command);
        command.SetAction(parse => CliErrors.Run(() =>
        {
            using var lutra = kernels.Load(parse, model, threads);
            _ = lutra.ChatRenderer; // fail before the first question when the template cannot be rendered
            var s = sampling.Read(parse);
            var options = new ChatOptions
            {
                Temperature = s.Temperature, TopK = s.TopK, TopP = s.TopP, Seed = s.Seed,
                MaxOutputTokens = parse.GetValue(predict) > 0 ? parse.GetValue(predict) : null,
            };
            using var client = lutra.AsChatClient(InferenceFlags.Options(parse, lutra, context, cacheK, cacheV, threads));
            var history = new List<ChatMessage>();
            if (parse.GetValue(system) is { Length: > 0 } sys)
                history.Add(new ChatMessage(ChatRole.System, sys));
            CancellationTokenSource? answering = null;
            ConsoleCancelEventHandler onCtrlC = (_, e) =>
            {
                // Ctrl-C while answering stops the answer; at the prompt it quits as usual.
                if (answering is { } a)
                {
                    e.Cancel = true;
                    a.Cancel();
                }
            };
            Console.CancelKeyPress += onCtrlC;
            try
            {
                while (true)
                {
                    Console.Error.Write("> ");
                    var line = Console.In.ReadLine();
                    if (string.IsNullOrWhiteSpace(line))
                        return 0;
                    history.Add(new ChatMessage(ChatRole.User, line));
                    using var cts = new CancellationTokenSource();
                    answering = cts;
                    var answer = new StringBuilder();
                    try
                    {
                        Answer(client, history, options, answer, cts.Token).GetAwaiter().GetResult();
                    }
                    catch (OperationCanceledException)
                    {
                        Console.Error.WriteLine(" [stopped]");
                    }
                    catch (ContextFullException e)
                    {
                        Console.Error.WriteLine($"error: {e.Message}");
                        return 1;
                    }
                    finally
                    {
                        answering = null;
                    }
                    Console.Out.WriteLine();
                    history.Add(new ChatMessage(ChatRole.Assistant, answer.ToString()));
                }
            }
            finally
            {
                Console.CancelKeyPress -= onCtrlC;
            }
        }));
        return command;
    }

    private static async Task Answer(IChatClient client, List<ChatMessage> history, ChatOptions options, StringBuilder answer, CancellationToken ct)
    {
        await foreach (var update in client.GetStreamingResponseAsync(history, options, ct).ConfigureAwait(false))
        {
            answer.Append(update.Text);
            await Console.Out.WriteAsync(update.Text).ConfigureAwait(false);
            await Console.Out.FlushAsync(ct).ConfigureAwait(false);
        }
    }
}
