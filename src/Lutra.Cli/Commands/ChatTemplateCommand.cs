using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Lutra.Gguf;
using Lutra.Runtime.Chat;
using Lutra.Runtime.ChatTemplates;

namespace Lutra.Cli.Commands;

/// <summary>
/// <c>lutra chat-template</c>: renders a conversation (JSON) with a model's chat template, or a template
/// file, and prints the prompt exactly as the model would receive it, with no added newline.
/// </summary>
internal static class ChatTemplateCommand
{
    private const string TemplateKey = "tokenizer.chat_template";

    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m") { Description = "GGUF model whose tokenizer.chat_template is used" };
        var template = new Option<string?>("--template") { Description = "Jinja chat template file (instead of --model)" };
        var messages = new Option<string>("--messages")
        {
            Description = "conversation JSON: {\"messages\": [{\"role\", \"content\"}...], optional add_generation_prompt, bos_token, eos_token, tools}",
            Required = true,
        };
        var addGenerationPrompt = new Option<bool>("--add-generation-prompt") { Description = "end with the assistant header (overrides the JSON)" };
        var bos = new Option<string?>("--bos-token") { Description = "bos_token value (default: JSON, then the model's BOS token)" };
        var eos = new Option<string?>("--eos-token") { Description = "eos_token value (default: JSON, then the model's EOS token)" };
        var now = new Option<string?>("--now") { Description = "time strftime_now reports, e.g. 2025-02-20T12:00:00 (default: local clock)" };

        var command = new Command("chat-template", "Render a conversation with a chat template and print the prompt");
        foreach (var option in new Option[] { model, template, messages, addGenerationPrompt, bos, eos, now })
            command.Options.Add(option);
        command.SetAction(parse => CliErrors.Run(() => Run(
            parse.GetValue(model),
            parse.GetValue(template),
            parse.GetValue(messages)!,
            parse.GetValue(addGenerationPrompt),
            parse.GetValue(bos),
            parse.GetValue(eos),
            parse.GetValue(now))));
        return command;
    }

    private static int Run(string? modelPath, string? templatePath, string messagesPath, bool addGenerationPrompt, string? bosToken, string? eosToken, string? nowText)
    {
        if ((modelPath is null) == (templatePath is null))
            throw new ArgumentException("give exactly one of --model (-m) and --template");

        DateTime? now = null;
        if (nowText is not null)
        {
            if (!DateTime.TryParse(nowText, CultureInfo.InvariantCulture, DateTimeStyles.None, out var parsed))
                throw new FormatException($"--now: '{nowText}' is not a date/time such as 2025-02-20T12:00:00");
            now = parsed;
        }

        string source;
        string? modelBos = null, modelEos = null;
        if (modelPath is not null)
        {
            using var gguf = GgufFile.Open(modelPath);
            source = gguf.Metadata.GetString(TemplateKey)
                ?? throw new InvalidDataException($"{modelPath} has no {TemplateKey}; pass a template with --template");
            modelBos = ChatTemplateSeam.SpecialTokenText(gguf.Metadata, "tokenizer.ggml.bos_token_id");
            modelEos = ChatTemplateSeam.SpecialTokenText(gguf.Metadata, "tokenizer.ggml.eos_token_id");
        }
        else
        {
            source = File.ReadAllText(templatePath!, Encoding.UTF8);
        }

        var conversation = Conversation.Load(messagesPath);
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = conversation.Messages,
            ["add_generation_prompt"] = addGenerationPrompt || conversation.AddGenerationPrompt,
            ["bos_token"] = bosToken ?? conversation.BosToken ?? modelBos ?? "",
            ["eos_token"] = eosToken ?? conversation.EosToken ?? modelEos ?? "",
        };
        if (conversation.Tools is { } tools)
            variables["tools"] = tools;

        string prompt;
        try
        {
            prompt = ChatTemplate.Parse(source).Render(variables, now);
        }
        catch (ChatTemplateException e)
        {
            throw new InvalidDataException($"chat template: {e.Message}", e);
        }

        using var stdout = Console.OpenStandardOutput();
        stdout.Write(Encoding.UTF8.GetBytes(prompt));
        return 0;
    }

    private sealed record Conversation(JsonElement Messages, bool AddGenerationPrompt, string? BosToken, string? EosToken, JsonElement? Tools)
    {
        public static Conversation Load(string path)
        {
            JsonDocument document;
            try
            {
                document = JsonDocument.Parse(File.ReadAllBytes(path));
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e);
            }
            using (document)
            {
                var root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array)
                    throw new InvalidDataException($"{path}: expected an object with a \"messages\" array");
                return new Conversation(
                    messages.Clone(),
                    root.TryGetProperty("add_generation_prompt", out var agp) && agp.ValueKind == JsonValueKind.True,
                    OptionalString(root, "bos_token", path),
                    OptionalString(root, "eos_token", path),
                    root.TryGetProperty("tools", out var tools) && tools.ValueKind != JsonValueKind.Null ? tools.Clone() : null);
            }
        }

        private static string? OptionalString(JsonElement root, string name, string path)
        {
            if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
                return null;
            return value.ValueKind == JsonValueKind.String ? value.GetString() : throw new InvalidDataException($"{path}: \"{name}\" must be a string");
        }
    }
}
